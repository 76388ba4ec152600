"""``SequenceClassifier``: a scikit-learn classifier that trains and predicts exactly as the scripts do.

``fit`` runs ``scripts/fit.py``'s own code on the arrays (:mod:`.training`), ``predict_proba`` runs
``scripts/predict.py``'s (``Trainer.predict`` over the same batches), and ``save`` writes one
checkpoint file that ``scripts/predict.py`` and ``scripts/export.py`` accept. See docs/python-api.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from bigru_lightning.app import atomic_output, classifier_from_checkpoint, load_checkpoint
from bigru_lightning.estimator.inputs import (
    as_file_labels,
    as_sequences,
    class_indices,
    classes_of_label_names,
    encode_labels,
)
from bigru_lightning.estimator.options import DATA_OPTIONS, MODEL_OPTIONS, cli_args
from bigru_lightning.estimator.training import fit_on_arrays, quiet
from bigru_lightning.predict import predict_probabilities
from bigru_lightning.recipe import FILE_DATA_CLASS

CLI_DEFAULT_SEED = 42  # scripts/fit.py's --seed_everything and --data.seed
ESTIMATOR_KEY = "estimator"  # the checkpoint entry save() adds: keywords, classes, features per step
PREDICT_BATCH = 1024  # scripts/predict.py's default --batch_size


class SequenceClassifier(ClassifierMixin, BaseEstimator):
    """Sequence classifier (BiGRU with the recipe's branches), trained as ``scripts/fit.py`` trains on a file.

    ``X`` is a 3-D array (sequences, steps, features), a 2-D array (sequences, steps) of one feature,
    or a list of 2-D arrays (steps, features) whose lengths may differ; labels may be of any type.
    Every keyword is the ``scripts/fit.py`` option of the same name (``--model.*``, ``--data.*``,
    ``--trainer.*``, ``--optimizer``, ``--optimizer.lr``, ``--optimizer.weight_decay``,
    ``--lr_scheduler``; see ``bigru_lightning.estimator.options``); ``None`` leaves the choice to the
    data-adaptive recipe or the CLI's default, as on a file. ``conv_channels=[]`` means no FCN branch.

    Args:
        threads: CPU threads while fitting (``--threads``; torch's count is restored after). None: the
            recipe's choice (one for batches of up to 24 sequences) or torch's.
        random_state: Seed of everything random (``--seed_everything`` and ``--data.seed``); None:
            the CLI's default seed 42, so that fits are reproducible as ``scripts/fit.py``'s are.
        verbose: Show the progress bar, model summary, the recipe's choices and Lightning's logs.
        log_dir: Write the usual TensorBoard run (events, ``config.yaml``, checkpoints, HParams entry;
            the test figures when ``fit`` is given ``test_data``) under this folder. None: nothing is
            written.

    Attributes:
        classes_: The classes, in the order of ``predict_proba``'s columns.
        n_features_in_: Features per time step.
        checkpoint_: The chosen checkpoint (weights, hyper-parameters, label names), as ``save`` writes it.
        test_metrics_: ``test/acc``, ``test/f1``, ... on ``fit``'s ``test_data`` (empty without it).
    """

    def __init__(
        self,
        *,
        hidden_size: int | None = None,
        num_layers: int | None = None,
        dropout: float | None = None,
        bidirectional: bool | None = None,
        pooling: str | None = None,
        class_weights: str | list[float] | None = None,
        conv_channels: list[int] | None = None,
        conv_kernels: list[int] | None = None,
        downsample: int | None = None,
        label_smoothing: float | None = None,
        rocket_features: int | None = None,
        rocket_max_dilation: int | None = None,
        batch_size: int | None = None,
        val_fraction: float | None = None,
        standardize: bool | None = None,
        device_cache_mb: float | None = None,
        accelerator: str | None = None,
        strategy: str | None = None,
        devices: int | str | list[int] | None = None,
        num_nodes: int | None = None,
        precision: str | int | None = None,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int | None = None,
        min_steps: int | None = None,
        max_time: str | None = None,
        fast_dev_run: int | bool | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        overfit_batches: int | float | None = None,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = None,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        accumulate_grad_batches: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool | None = None,
        use_distributed_sampler: bool | None = None,
        detect_anomaly: bool | None = None,
        sync_batchnorm: bool | None = None,
        reload_dataloaders_every_n_epochs: int | None = None,
        optimizer: str | dict[str, Any] | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        lr_scheduler: str | dict[str, Any] | None = None,
        threads: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
        log_dir: str | None = None,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.class_weights = class_weights
        self.conv_channels = conv_channels
        self.conv_kernels = conv_kernels
        self.downsample = downsample
        self.label_smoothing = label_smoothing
        self.rocket_features = rocket_features
        self.rocket_max_dilation = rocket_max_dilation
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.standardize = standardize
        self.device_cache_mb = device_cache_mb
        self.accelerator = accelerator
        self.strategy = strategy
        self.devices = devices
        self.num_nodes = num_nodes
        self.precision = precision
        self.max_epochs = max_epochs
        self.min_epochs = min_epochs
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.max_time = max_time
        self.fast_dev_run = fast_dev_run
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.limit_test_batches = limit_test_batches
        self.overfit_batches = overfit_batches
        self.val_check_interval = val_check_interval
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = num_sanity_val_steps
        self.log_every_n_steps = log_every_n_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.deterministic = deterministic
        self.benchmark = benchmark
        self.inference_mode = inference_mode
        self.use_distributed_sampler = use_distributed_sampler
        self.detect_anomaly = detect_anomaly
        self.sync_batchnorm = sync_batchnorm
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_scheduler = lr_scheduler
        self.threads = threads
        self.random_state = random_state
        self.verbose = verbose
        self.log_dir = log_dir

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, test_data: tuple[Any, Any] | None = None) -> SequenceClassifier:
        """Train on sequences ``X`` with labels ``y`` as ``scripts/fit.py`` trains on a file of them.

        Args:
            X: A 3-D array (sequences, steps, features), a 2-D array (sequences, steps) or a list of
                2-D arrays (steps, features) of any lengths.
            y: One label per sequence, of any type; at least two classes.
            test_data: Optional ``(X_test, y_test)``, tested after fitting as ``fit.py`` tests its
                test file (``test_metrics_``; with ``log_dir``, the run's test figures). It does not
                change the training.

        Raises:
            ValueError: A bad input or option (one line), before any training starts.
        """
        train = as_sequences(X)
        classes, codes = encode_labels(y, train.num_sequences)
        train.labels = as_file_labels(codes, classes)
        test = None
        if test_data is not None:
            x_test, y_test = test_data
            test = as_sequences(x_test, "test_data X")
            self._check_features(test.num_features, train.num_features, "test_data X")
            test.labels = as_file_labels(class_indices(y_test, classes, test.num_sequences, "test_data y"), classes)
        seed = self._seed()
        options = [*cli_args(self.get_params()), "--seed_everything", str(seed), "--data.seed", str(seed)]
        checkpoint, metrics = fit_on_arrays(train, options, test=test, verbose=bool(self.verbose), log_dir=self.log_dir)
        self.classes_ = classes
        self.n_features_in_ = train.num_features
        self.checkpoint_ = checkpoint
        self.test_metrics_ = metrics
        self._model = classifier_from_checkpoint(checkpoint, "SequenceClassifier")
        return self

    def _seed(self) -> int:
        if self.random_state is None:
            return CLI_DEFAULT_SEED
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            if not 0 <= int(self.random_state) < 2**32:
                raise ValueError(f"random_state must be in [0, 2**32); got {self.random_state}")
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31))

    # -- predicting --------------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (sequences, classes), columns in ``classes_`` order (``scripts/predict.py``'s)."""
        check_is_fitted(self, "checkpoint_")
        data = as_sequences(X)
        self._check_features(data.num_features, self.n_features_in_, "X")
        with quiet(bool(self.verbose)):
            probabilities = predict_probabilities(
                self._model, data, PREDICT_BATCH, self.accelerator if self.accelerator else "auto"
            )
        return probabilities.astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sequence."""
        probabilities = self.predict_proba(X)  # first: it refuses an unfitted estimator
        return np.asarray(self.classes_[np.argmax(probabilities, axis=1)])

    @staticmethod
    def _check_features(found: int, expected: int, name: str) -> None:
        if found != expected:
            raise ValueError(f"{name} has {found} features per step, but SequenceClassifier was fitted with {expected}")

    # -- saving --------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted model as one checkpoint file (``scripts/predict.py`` and ``scripts/export.py`` read it)."""
        check_is_fitted(self, "checkpoint_")
        target = Path(path)
        entry = {
            "params": {key: value for key, value in self.get_params().items() if _plain(value)},
            "classes": self.classes_.tolist(),
            "n_features_in": int(self.n_features_in_),
        }
        with atomic_output(target, param="path") as temporary:
            torch.save({**self.checkpoint_, ESTIMATOR_KEY: entry}, temporary)
        return target

    @classmethod
    def load(cls, path: str | Path) -> SequenceClassifier:
        """A fitted estimator from a file of :meth:`save` or a checkpoint of ``scripts/fit.py``.

        A ``fit.py`` checkpoint gives the model's and the data's options as keywords and the label
        names as ``classes_`` (integers where every name spells one).
        """
        checkpoint = load_checkpoint(path, "path")
        entry = checkpoint.pop(ESTIMATOR_KEY, None)
        model = classifier_from_checkpoint(checkpoint, f"path {path}")  # refuses what predict.py refuses
        if entry is not None:
            estimator = cls(**entry["params"])
            classes = np.asarray(entry["classes"])
            features = int(entry["n_features_in"])
        else:
            estimator = cls(**_params_of_fit_checkpoint(checkpoint))
            classes = classes_of_label_names(model.label_names)
            features = int(model.hparams["input_size"])
        estimator.classes_ = classes
        estimator.n_features_in_ = features
        estimator.checkpoint_ = checkpoint
        estimator.test_metrics_ = {}
        estimator._model = model
        return estimator

    # -- scikit-learn protocol -------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the network (``checkpoint_`` holds its weights; unpickling rebuilds it)."""
        state = dict(super().__getstate__())
        state.pop("_model", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, and rebuild the network from ``checkpoint_`` when fitted."""
        super().__setstate__(state)
        if "checkpoint_" in self.__dict__:
            self._model = classifier_from_checkpoint(self.checkpoint_, "SequenceClassifier")

    def __sklearn_tags__(self) -> Any:
        """Sequences: 3-D arrays are accepted; 2-D arrays are sequences of one feature."""
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def _plain(value: Any) -> bool:
    """Whether ``value`` is plain data that a weights-only checkpoint can hold."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _params_of_fit_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The keywords of a ``scripts/fit.py`` checkpoint: its model's options, and its file data's."""
    hparams = checkpoint.get("hyper_parameters", {})
    params = {key: hparams[key] for key in MODEL_OPTIONS if key in hparams}
    if "conv_channels" in params and params["conv_channels"] is None:
        params["conv_channels"] = []  # no FCN branch (None would leave it to the recipe)
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    if str(data.get("_class_path", "")).endswith(FILE_DATA_CLASS) or "train_file" in data:
        params |= {key: data[key] for key in DATA_OPTIONS if key in data}
        if isinstance(data.get("seed"), int):
            params["random_state"] = data["seed"]
    return params
