"""bigru-lightning: bidirectional GRU sequence classifiers trained with PyTorch Lightning."""

__version__ = "0.1.0"
