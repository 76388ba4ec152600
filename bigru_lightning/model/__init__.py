"""The network, pure PyTorch: the BiGRU classifier, its poolings and blocks, and its exportable wrapper.

- :mod:`~bigru_lightning.model.network`: :class:`BiGRU`, the classifier assembled from the blocks below;
- :mod:`~bigru_lightning.model.recurrent`: the stacked (bi)GRU that reads valid steps only (no packing);
- :mod:`~bigru_lightning.model.pooling`: the poolings over time (:data:`POOLINGS`), each written once;
- :mod:`~bigru_lightning.model.conv`: the FCN branch (GRU-FCN); :mod:`~bigru_lightning.model.downsample`:
  shortening before the GRU; :mod:`~bigru_lightning.model.steps`: masks and gathers along time;
- :mod:`~bigru_lightning.model.exportable`: standardise + the same network + softmax, for ONNX/TorchScript.
"""

from bigru_lightning.model.exportable import ExportableClassifier, FixedLengthGraph, PaddedGraph
from bigru_lightning.model.network import BiGRU
from bigru_lightning.model.pooling import POOLINGS, Pooling

__all__ = ["POOLINGS", "BiGRU", "ExportableClassifier", "FixedLengthGraph", "PaddedGraph", "Pooling"]
