"""Data: generated Gaussian tasks and their Bayes oracle, the batcher, and the DataModules."""

from bigru_lightning.data.base import SequenceDataModule, SequenceSplit
from bigru_lightning.data.batching import TensorBatcher
from bigru_lightning.data.gaussian import GaussianTask
from bigru_lightning.data.gaussian_datamodule import GaussianDataModule

__all__ = ["GaussianDataModule", "GaussianTask", "SequenceDataModule", "SequenceSplit", "TensorBatcher"]
