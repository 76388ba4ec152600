"""The estimator's keywords and the CLI options they stand for: one table, read by the estimator and its tests.

Every keyword carries the name of its ``scripts/fit.py`` option (``hidden_size`` is
``--model.hidden_size``, ``max_epochs`` is ``--trainer.max_epochs``, ``lr`` is ``--optimizer.lr``).
``None`` means "not given": the option is left out of the command line, so the data-adaptive recipe
(``bigru_lightning.recipe``) or the CLI's default chooses it, exactly as for a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MODEL_OPTIONS = (
    "hidden_size",
    "num_layers",
    "dropout",
    "bidirectional",
    "pooling",
    "class_weights",
    "conv_channels",
    "conv_kernels",
    "downsample",
    "label_smoothing",
    "rocket_features",
    "rocket_max_dilation",
)
DATA_OPTIONS = ("batch_size", "val_fraction", "standardize", "device_cache_mb")
TRAINER_OPTIONS = (
    "accelerator",
    "strategy",
    "devices",
    "num_nodes",
    "precision",
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "max_time",
    "fast_dev_run",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "overfit_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "log_every_n_steps",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "deterministic",
    "benchmark",
    "inference_mode",
    "use_distributed_sampler",
    "detect_anomaly",
    "sync_batchnorm",
    "reload_dataloaders_every_n_epochs",
)
# keyword -> CLI flag; the optimizer class comes before its arguments (the CLI reads them in order)
OPTIMIZER_OPTIONS = {
    "optimizer": "--optimizer",
    "lr": "--optimizer.lr",
    "weight_decay": "--optimizer.weight_decay",
    "lr_scheduler": "--lr_scheduler",
}
RUN_OPTIONS = {"threads": "--threads"}  # the CLI's own options
# Trainer arguments the estimator sets itself, and why (docs/python-api.md lists them too).
MANAGED_TRAINER_OPTIONS = {
    "logger": "log_dir= (a TensorBoard run there; none without it)",
    "default_root_dir": "log_dir= (or a temporary folder, removed after fitting)",
    "callbacks": "the CLI's own (checkpoints, epoch lines, figures)",
    "enable_checkpointing": "always on: the estimator keeps the checkpoint the CLI would test",
    "enable_progress_bar": "verbose=",
    "enable_model_summary": "verbose=",
    "profiler": "the CLI's",
    "plugins": "the CLI's",
    "barebones": "would turn off the checkpoints and logging the run needs",
    "limit_predict_batches": "prediction covers every sequence",
    "enable_autolog_hparams": "the CLI writes its own HParams entry",
    "model_registry": "not used",
}
# Keywords of the estimator itself, not of the CLI.
OWN_KEYWORDS = ("random_state", "verbose", "log_dir")


def keyword_flags() -> dict[str, str]:
    """Every CLI keyword of the estimator and its flag, in the estimator's order."""
    flags = {name: f"--model.{name}" for name in MODEL_OPTIONS}
    flags |= {name: f"--data.{name}" for name in DATA_OPTIONS}
    flags |= {name: f"--trainer.{name}" for name in TRAINER_OPTIONS}
    return flags | OPTIMIZER_OPTIONS | RUN_OPTIONS


def cli_value(name: str, value: Any) -> str:
    """``value`` as the CLI reads it (YAML): strings as they are, everything else as JSON.

    ``conv_channels=[]`` is ``null``: no FCN branch (``None`` already means "the recipe's choice").
    """
    if name == "conv_channels" and isinstance(value, (list, tuple)) and len(value) == 0:
        return "null"
    if isinstance(value, str):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    return json.dumps(value)


def cli_args(params: Mapping[str, Any]) -> list[str]:
    """The ``scripts/fit.py`` options for the keywords given (not None) in ``params``."""
    args: list[str] = []
    for name, flag in keyword_flags().items():
        value = params.get(name)
        if value is not None:
            args += [flag, cli_value(name, value)]
    return args
