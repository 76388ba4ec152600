"""The Python API: :class:`SequenceClassifier`, a scikit-learn estimator that trains as ``scripts/fit.py`` does."""

from bigru_lightning.estimator.classifier import SequenceClassifier

__all__ = ["SequenceClassifier"]
