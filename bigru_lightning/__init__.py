"""bigru-lightning: bidirectional GRU sequence classifiers trained with PyTorch Lightning."""

import os

__version__ = "0.1.0"

# torch's OpenMP threads sleep, rather than spin, between parallel regions (unless the user chose
# otherwise). Spinning threads slowed CPU training up to 15-fold whenever another process held a core
# (a shared machine, CI, a second run); on a quiet machine sleeping cost up to 8% on large batches
# (docs/performance.md, "CPU threads on small machines"). It takes effect when torch is imported after
# this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str) -> object:
    """``from bigru_lightning import SequenceClassifier`` (imported on first use: the scripts stay quick)."""
    if name == "SequenceClassifier":
        from bigru_lightning.estimator import SequenceClassifier

        return SequenceClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
