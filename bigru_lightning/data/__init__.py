"""Data: generated Gaussian tasks and their Bayes oracle, file readers, the batcher, and the DataModules."""

from bigru_lightning.data.base import SequenceDataModule, SequenceSplit
from bigru_lightning.data.batching import TensorBatcher
from bigru_lightning.data.file_datamodule import FileDataModule
from bigru_lightning.data.files import SequenceFile, read_sequences
from bigru_lightning.data.gaussian import GaussianTask
from bigru_lightning.data.gaussian_datamodule import GaussianDataModule

__all__ = [
    "FileDataModule",
    "GaussianDataModule",
    "GaussianTask",
    "SequenceDataModule",
    "SequenceFile",
    "SequenceSplit",
    "TensorBatcher",
    "read_sequences",
]
