"""bigru-lightning: bidirectional GRU sequence classifiers trained with PyTorch Lightning."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``from bigru_lightning import SequenceClassifier`` (imported on first use: the scripts stay quick)."""
    if name == "SequenceClassifier":
        from bigru_lightning.estimator import SequenceClassifier

        return SequenceClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
