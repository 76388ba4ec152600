"""The command line: a LightningCLI that trains, tests the best checkpoint and reports.

``main(args)`` is what ``scripts/fit.py`` calls. It accepts every LightningCLI option
(``--model.*``, ``--data.*``, ``--trainer.*``, ``--optimizer``, ``--lr_scheduler``, ``--config``,
``--print_config``, ``--seed_everything``) plus ``--ckpt_path`` (a file, or ``last``: the newest
run's ``last.ckpt`` under the logger's folder) and the shorthands ``--accelerator``, ``--devices``
and ``--precision`` for their ``--trainer.*`` forms. Runs go to ``lightning_logs/version_N``, under
``--trainer.default_root_dir`` when given (logs, checkpoints, ``config.yaml``, figures). User
mistakes end in one ``error:`` line and exit status 2 (set ``BIGRU_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import lazy_instance
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim import Optimizer

from bigru_lightning.app import load_checkpoint, run_command
from bigru_lightning.callbacks import EpochLinePrinter, run_settings, write_hparams_entry
from bigru_lightning.data.base import SequenceDataModule
from bigru_lightning.data.gaussian_datamodule import GaussianDataModule
from bigru_lightning.errors import UserInputError, find_user_error, one_line
from bigru_lightning.figures.callback import TestFigureLogger
from bigru_lightning.model import upgrade_state_dict
from bigru_lightning.module import DEFAULT_ADAM_ARGS, BiGRUClassifier
from bigru_lightning.recipe import apply_recipe, flatten_keys, uses_recipe
from bigru_lightning.resilience import (
    AtomicCheckpointIO,
    GracefulStop,
    ResumableCheckpoint,
    RNGStateCheckpoint,
    resume_purge_step,
)

SHORTHANDS = ("accelerator", "devices", "precision", "num_nodes", "strategy", "max_epochs")


def expand_shorthands(args: Sequence[str]) -> list[str]:
    """Rewrite ``--accelerator gpu`` (and the other :data:`SHORTHANDS`) as ``--trainer.accelerator gpu``."""
    expanded = []
    for arg in args:
        name, sep, value = arg.partition("=")
        if name.startswith("--") and name[2:] in SHORTHANDS:
            arg = f"--trainer.{name[2:]}{sep}{value}"
        expanded.append(arg)
    return expanded


def check_config_files(args: Sequence[str]) -> None:
    """Refuse a ``--config`` file that is not valid YAML, naming the file and the line."""
    for index, arg in enumerate(args):
        if arg in ("--config", "-c") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = Path(value)
        if not path.is_file():
            continue  # jsonargparse reports missing files (and accepts inline YAML strings)
        try:
            yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise UserInputError(f"--config {value}: not valid YAML ({problem}{where})") from error


class RunConfigSaver(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` beside the logs; a resumed run keeps the original."""

    resuming = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Write the config unless this run resumes one whose config is already there."""
        log_dir = trainer.log_dir
        if self.resuming and log_dir and (Path(log_dir) / self.config_filename).exists():
            return
        super().setup(trainer, pl_module, stage)


class BiGRUCLI(LightningCLI):
    """LightningCLI for the BiGRU classifier: links data shapes into the model, trains and tests."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--ckpt_path``, the ``--checkpoint.*`` group, shape links and the tutorial's optimizer."""
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Resume training from this checkpoint; 'last' = the newest run's last.ckpt.",
        )
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="CPU threads for torch's operations while fitting and testing (torch.set_num_threads, "
            "restored afterwards). None: torch's default, or for file data the recipe's choice.",
        )
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        parser.set_defaults(
            {
                "data": {"class_path": "bigru_lightning.data.GaussianDataModule"},
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:02d}",
                "optimizer": {"class_path": "torch.optim.Adam", "init_args": dict(DEFAULT_ADAM_ARGS)},
                "trainer.logger": lazy_instance(TensorBoardLogger, save_dir=".", default_hp_metric=False),
            }
        )
        parser.link_arguments("data.num_features", "model.input_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse ``args`` (already taken from ``sys.argv`` by :func:`main`, hence no double-source warning).

        The default logger's folder follows ``--trainer.default_root_dir`` (see :func:`follow_default_root_dir`).
        """
        self.config = parser.parse_args(args)
        needs_given = uses_recipe(self.config) or _default_root_dir(self.config) is not None
        self.given_keys = user_given_keys(parser, args) if needs_given else set()
        follow_default_root_dir(self.config, self.given_keys)

    def before_instantiate_classes(self) -> None:
        """Check the accelerator, resolve ``--ckpt_path last`` and point the logger at the resumed run."""
        check_accelerator(self.config.get("trainer", {}).get("accelerator", "auto"))
        check_threads(self.config.get("threads"))
        for choice in apply_recipe(self.config, getattr(self, "given_keys", set())):
            print(choice.line(), flush=True)
        ckpt_path = self.config.get("ckpt_path")
        if not ckpt_path:
            return
        logger_cfg = self.config.get("trainer", {}).get("logger")
        runs_dir = runs_folder(self.config)
        if ckpt_path == "last":
            folder, pattern = last_checkpoint_pattern(self.config)
            found = find_last_checkpoint(folder, pattern)
            if found is None:  # like Lightning's own ckpt_path="last": a preemptible job's first launch
                where = Path(folder, pattern).parent
                _warn(f"--ckpt_path last: no checkpoint in {where} yet; starting afresh")
                self.config["ckpt_path"] = None
                return
            path = found
        else:
            path = Path(ckpt_path)
        if not path.is_file():
            raise UserInputError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
        checkpoint = load_checkpoint(path)
        self.config["ckpt_path"] = str(path)
        version = _version_of(path, runs_dir) if runs_dir is not None else None
        if version is not None and _is_tensorboard(logger_cfg):
            logger_cfg.init_args.version = version
            # Drop the events a killed run logged after this checkpoint: the resumed run logs them again.
            logger_cfg.init_args.purge_step = resume_purge_step(checkpoint)
        self._resume_checkpoint = checkpoint

    def instantiate_classes(self) -> None:
        """Instantiate data, model, optimizer and trainer; a refused value becomes a one-line user error."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            if find_user_error(error) is not None:
                raise
            raise UserInputError(one_line(error)) from error

    def after_instantiate_classes(self) -> None:
        """Atomic checkpoint files; tell the config saver whether this run resumes."""
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, RunConfigSaver):
                callback.resuming = bool(self.config.get("ckpt_path"))
        checkpoint = getattr(self, "_resume_checkpoint", None)
        if checkpoint is not None:
            check_checkpoint_fits(checkpoint, self.model, str(self.config["ckpt_path"]))

    def run(self) -> dict[str, float]:
        """Fit, test the best checkpoint, print the tutorial's lines and return the test metrics."""
        best = self.fit_and_choose()
        if self.trainer.interrupted:
            return {}
        return self.test_and_report(best)

    def fit_and_choose(self) -> str:
        """Fit; return the checkpoint that the run tests and keeps: the best by ``checkpoint.monitor``.

        Without a monitor (no validation split) that is the last one saved; ``""`` when none was
        saved (the current weights are then the ones). The Python API fits through this too.
        """
        model: BiGRUClassifier = self.model
        datamodule: SequenceDataModule = self.datamodule
        datamodule.setup("fit")  # read or generate the data before any log folder exists
        hand_data_facts_to_model(datamodule, model)
        ckpt_path = self.config.get("ckpt_path")
        with torch_threads(self.config.get("threads")):
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        checkpoint = self.trainer.checkpoint_callback
        return checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""

    def test_and_report(self, best: str) -> dict[str, float]:
        """Test ``best`` (or the current weights), print and log the results; return the test metrics."""
        model: BiGRUClassifier = self.model
        datamodule: SequenceDataModule = self.datamodule
        with torch_threads(self.config.get("threads")):
            results = self.trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        if isinstance(datamodule, GaussianDataModule):
            metrics["test/bayes_acc"] = datamodule.bayes_accuracy()
        if self.trainer.is_global_zero and "test/acc" in metrics:
            print(f"Test Accuracy: {100 * metrics['test/acc']:.2f}%")
            if "test/bayes_acc" in metrics:
                print(f"Bayes-Optimal Accuracy: {100 * metrics['test/bayes_acc']:.2f}%")
        self._log_final(metrics)
        return metrics

    def _log_final(self, metrics: dict[str, float]) -> None:
        """Write ``test/bayes_acc`` as a scalar and the run's TensorBoard HParams entry with the test metrics."""
        logger = self.trainer.logger
        if not isinstance(logger, TensorBoardLogger) or not self.trainer.is_global_zero:
            return
        if "test/bayes_acc" in metrics:
            logger.log_metrics({"test/bayes_acc": metrics["test/bayes_acc"]}, step=self.trainer.global_step)
        write_hparams_entry(logger, *self.hparams_entry(metrics))
        logger.finalize("success")

    def hparams_entry(self, metrics: dict[str, float]) -> tuple[dict[str, Any], dict[str, float]]:
        """The settings and metrics of this run's TensorBoard HParams entry (subclasses add theirs)."""
        return run_settings(self.trainer, self.model, self.datamodule), metrics


def user_given_keys(parser: LightningArgumentParser, args: Any) -> set[str]:
    """Dotted keys the user set, on the command line or in a ``--config`` file (defaults excluded)."""
    return flatten_keys(parser.parse_args(args, defaults=False))


def accelerators_here() -> list[str]:
    """The ``--trainer.accelerator`` values this machine can run: ``auto``, then every available accelerator.

    ``gpu`` is Lightning's alias for CUDA or MPS; ``tpu`` needs ``torch_xla`` and a TPU.
    """
    names = ["auto"]
    for name in AcceleratorRegistry.available_accelerators():
        try:
            available = bool(AcceleratorRegistry[name]["accelerator"].is_available())
        except Exception:  # an accelerator whose library is missing cannot even say so politely
            available = False
        if available:
            names.append(name)
    if "cuda" in names or "mps" in names:
        names.insert(names.index("cpu") + 1 if "cpu" in names else 1, "gpu")
    return names


def check_accelerator(accelerator: object) -> None:
    """Refuse an accelerator name that this machine cannot run (not installed, no device, or a typo)."""
    if not isinstance(accelerator, str):
        return  # an Accelerator instance given by class_path: Lightning checks it
    accepted = accelerators_here()
    if accelerator.lower() not in accepted:
        raise UserInputError(
            f"--trainer.accelerator: expected one this machine has ({', '.join(accepted)}), got {accelerator}"
        )


def check_threads(threads: object) -> None:
    """``--threads``: a whole number of at least 1, or null."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UserInputError(f"--threads: accepted: a whole number of CPU threads, at least 1, or null; got {threads}")


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Set torch's intra-op CPU threads to ``count`` inside the block, restore them after; None: leave them.

    Restored because the Python API fits in the user's own process.
    """
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hand_data_facts_to_model(datamodule: SequenceDataModule, model: BiGRUClassifier) -> None:
    """Give the model what only the data knows: input scaling, label names, auto class weights."""
    if datamodule.feature_mean is not None and datamodule.feature_std is not None:
        model.set_input_scaling(datamodule.feature_mean, datamodule.feature_std)
    model.label_names = list(datamodule.label_names)
    if model.hparams.get("class_weights") == "auto" and datamodule.train_split is not None:
        counts = torch.bincount(datamodule.train_split.y[:], minlength=datamodule.num_classes).double()
        weights = counts.sum() / (len(counts) * counts.clamp(min=1))
        model.set_class_weights(weights.float())


def check_checkpoint_fits(checkpoint: dict[str, Any], model: BiGRUClassifier, where: str) -> None:
    """Refuse a checkpoint whose weights do not fit ``model`` (other sizes, layers or classes)."""
    upgrade_state_dict(checkpoint["state_dict"], prefix="net.")  # weights saved by earlier layouts of the net
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor)}
    if expected != found:
        saved = checkpoint.get("hyper_parameters", {})
        differing = [
            f"{key}={saved[key]!r} (now {value!r})"
            for key, value in model.hparams.items()
            if key in saved and saved[key] != value
        ]
        detail = ", ".join(differing) if differing else "different weights"
        raise UserInputError(f"--ckpt_path {where}: made for another model: {detail}")


def find_last_checkpoint(folder: Path, pattern: str = "version_*/checkpoints/last.ckpt") -> Path | None:
    """The most recently written file matching ``pattern`` under ``folder``, or None if there is none."""
    candidates = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def follow_default_root_dir(config: Any, given: set[str]) -> None:
    """Put the default logger's folder under ``--trainer.default_root_dir``, as Lightning's own default logger is.

    The project's default logger is a TensorBoardLogger with ``save_dir="."``; when the user names a
    ``default_root_dir`` and no ``save_dir`` of their own (``given``: the dotted keys they set), the
    logger writes there instead, and with it the run's checkpoints, ``config.yaml`` and figures.
    """
    root = _default_root_dir(config)
    logger_cfg = config.get("trainer", {}).get("logger")
    if root is None or not _is_tensorboard(logger_cfg) or "trainer.logger.save_dir" in given:
        return
    if str(logger_cfg.init_args.get("save_dir")) == ".":
        logger_cfg.init_args.save_dir = root


def runs_folder(config: Any) -> Path | None:
    """The folder of the run's ``version_N`` folders (``<save_dir>/<name>``), or None when there is no logger."""
    trainer = config.get("trainer", {})
    logger_cfg = trainer.get("logger")
    root = Path(_default_root_dir(config) or ".")
    if logger_cfg is False:
        return None
    if hasattr(logger_cfg, "init_args") and logger_cfg.init_args.get("save_dir") is not None:
        init = logger_cfg.init_args
        name = init.get("name")
        return Path(str(init.save_dir)) / ("" if name is None else str(name))  # Lightning's loggers: None is ""
    return root / "lightning_logs"  # Lightning's default logger (logger true or null)


def last_checkpoint_pattern(config: Any) -> tuple[Path, str]:
    """Where ``--ckpt_path last`` looks: a folder and the glob pattern of ``last.ckpt`` files under it.

    ``--checkpoint.dirpath`` when given; otherwise every run of the logger's folder, or (no logger)
    ``<default_root_dir>/checkpoints`` as Lightning places them.
    """
    dirpath = config.get("checkpoint", {}).get("dirpath")
    if dirpath:
        return Path(str(dirpath)), "last.ckpt"
    runs_dir = runs_folder(config)
    if runs_dir is None:
        return Path(_default_root_dir(config) or "."), "checkpoints/last.ckpt"
    return runs_dir, "version_*/checkpoints/last.ckpt"


def _default_root_dir(config: Any) -> str | None:
    root = config.get("trainer", {}).get("default_root_dir")
    return None if root is None else str(root)


@rank_zero_only
def _warn(message: str) -> None:
    """One ``warning:`` line on stderr (rank 0 only)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _is_tensorboard(logger_cfg: Any) -> bool:
    class_path = getattr(logger_cfg, "class_path", None) or ""
    return str(class_path).endswith("TensorBoardLogger") and hasattr(logger_cfg, "init_args")


def _version_of(path: Path, runs_dir: Path) -> int | None:
    """N when ``path`` is ``runs_dir/version_N/checkpoints/<file>``, else None."""
    try:
        relative = path.resolve().relative_to(runs_dir.resolve())
    except ValueError:
        return None
    match = re.fullmatch(r"version_(\d+)", relative.parts[0]) if len(relative.parts) == 3 else None
    return int(match.group(1)) if match else None


class _DropAdvertising(logging.Filter):
    """Drop Lightning's advertising tips from the run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


class _DropSeedLine(logging.Filter):
    """Drop "Seed set to 42": the seed is in config.yaml, and a refused input then prints one line only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Seed set to")


def quiet_known_warnings() -> None:
    """Silence Lightning messages that are expected with this design, not user problems."""
    for pattern in (
        r".*configure_optimizers` will be overridden by",
        r".*does not have many workers",
        r".*The number of training batches .* is smaller than the logging interval",
        r".*isinstance\(treespec, LeafSpec\)` is deprecated",
        r".*Total length of `list` across ranks is zero",  # val_fraction 0: no validation batches
        # Epoch metrics are torchmetrics objects, synced across processes by their compute().
        r".*It is recommended to use `self.log\(.*sync_dist=True\)`",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    rank_zero_logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdvertising) for f in rank_zero_logger.filters):
        rank_zero_logger.addFilter(_DropAdvertising())
    seed_logger = logging.getLogger("lightning.fabric.utilities.seed")
    if not any(isinstance(f, _DropSeedLine) for f in seed_logger.filters):
        seed_logger.addFilter(_DropSeedLine())


def make_cli(argv: Sequence[str], cli_class: type[BiGRUCLI] = BiGRUCLI) -> BiGRUCLI:
    """Parse ``argv`` (already expanded) and instantiate model, data and trainer, without running."""
    return cli_class(
        BiGRUClassifier,
        SequenceDataModule,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        args=list(argv),
        run=False,
        parser_kwargs={"exit_on_error": False},
        seed_everything_default=42,
        trainer_defaults={
            "max_epochs": 10,
            "log_every_n_steps": 50,  # step-level points only; epoch metrics are written every epoch
            # A progress bar only where someone watches it: piped output keeps the epoch lines clean.
            "enable_progress_bar": sys.stdout.isatty(),
            "callbacks": [EpochLinePrinter(), RNGStateCheckpoint(), GracefulStop(), TestFigureLogger()],
        },
    )


def main(args: Sequence[str] | None = None) -> dict[str, float]:
    """Run the CLI on ``args`` (default: ``sys.argv[1:]``) and return the test metrics."""
    argv = expand_shorthands(sys.argv[1:] if args is None else args)
    quiet_known_warnings()
    return run_command(lambda: _fit_and_test(argv))


def _fit_and_test(argv: list[str]) -> dict[str, float]:
    try:
        check_config_files(argv)
        return make_cli(argv).run()
    except SIGTERMException:
        print("Interrupted: last.ckpt written; continue with --ckpt_path last", file=sys.stderr)
        raise SystemExit(143) from None
