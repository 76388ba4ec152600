"""Throughput of the project's Trainer path against a plain PyTorch loop and a standard DataLoader.

    python benchmarks/throughput.py                       # defaults: 200,000 sequences, batch 256, 2 epochs, 5 rounds
    python benchmarks/throughput.py --rounds 7 --json     # one JSON object
    python benchmarks/throughput.py --accelerator gpu --precision bf16-mixed --batch_size 4096

In one process, on the same generated data, model and batch size, it times

* ``plain``: a hand-written PyTorch loop doing the same work as the project's run (the same shuffled
  batches by index-select, input standardisation, Adam, weighted cross-entropy, per-epoch train
  loss/accuracy, validation loss/accuracy after every epoch). Its Adam is the tutorial's (torch's default
  kernel), while the project's default is fused; ``--reference_adam fused`` gives the plain loop and the
  bare Trainer the fused one too, so that the ratios hold the optimizer kernel equal;
* ``lightning``: the project's Trainer path, built by the same CLI as ``scripts/fit.py`` (same module,
  DataModule, callbacks, checkpoints and TensorBoard logger, written to a temporary folder);
* ``lightning_dataloader``: the same Trainer fed by ``DataLoader(TensorDataset)`` instead of the batcher;
* ``lightning_bare``: the floor of Lightning's own loop: a bare ``Trainer`` (no logger, checkpoints,
  callbacks, summary or sanity check) running a minimal LightningModule that does the plain loop's step
  (same network, scaling, loss and per-epoch sums) on the same batcher. ``lightning_vs_bare`` is what the
  project adds on top of Lightning; ``bare_vs_plain`` is what Lightning's loop itself costs;
* the batcher alone against ``DataLoader(TensorDataset)`` alone (shuffled training epochs);
* each model option of :data:`MODEL_OPTIONS` through the Trainer path at batch 256.

Fairness: every contestant first runs once untimed (warm-up: code paths, allocator, caches); then the
contestants run in ``--rounds`` interleaved rounds, each round in a rotated order; each ratio is taken
within a round, and its median over the rounds is reported with its range (``benchmarks/rounds.py``
marks a median whose range is too wide to trust). Every contestant reports the work it did (training
samples, optimizer steps, validation samples, per-epoch losses); the run stops with an error if the
training contestants did not do the same work.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

if __package__ in (None, ""):  # run as a script: make the peer modules importable as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rounds import Summary, rotated, summarise
from bigru_lightning.data.batching import TensorBatcher
from bigru_lightning.data.gaussian_datamodule import GaussianDataModule
from bigru_lightning.model import BiGRU

SEED = 42
TRAINING = ("plain", "lightning", "lightning_dataloader", "lightning_bare")
MODEL_BATCH_SIZE = 256

# ---------------------------------------------------------------------------------------------------
# The model options timed at batch 256 (samples/s through the Trainer path), one row each: a label
# and the --model.* options that select it. To add a row, add an entry here. A row whose option the
# installed BiGRUClassifier does not take yet is skipped (listed under "skipped" in the output).
# ---------------------------------------------------------------------------------------------------
MODEL_OPTIONS: dict[str, list[str]] = {
    "BiGRU final_state (default)": [],
    "pooling last_step": ["--model.pooling", "last_step"],
    "pooling mean": ["--model.pooling", "mean"],
    "pooling max": ["--model.pooling", "max"],
    "pooling attention": ["--model.pooling", "attention"],
    "conv_channels [128, 256, 128]": ["--model.conv_channels", "[128, 256, 128]"],
    "downsample 2": ["--model.downsample", "2"],
    "2 layers, hidden 64": ["--model.num_layers", "2", "--model.hidden_size", "64"],
}


@dataclass
class BenchConfig:
    """What to run: the same settings for every contestant.

    Attributes:
        accelerator: ``cpu``, ``gpu``/``cuda`` or ``auto``.
        precision: Lightning precision string: ``32-true``, ``bf16-mixed`` or ``16-mixed``.
        num_samples: Sequences generated for train + validation (split 80/20).
        batch_size: Sequences per batch.
        hidden_size: GRU hidden units per direction.
        epochs: Training epochs per timed run (validation after each).
        rounds: Interleaved rounds of the contestants (at least 5 for a median to trust).
        seq_len: Time steps per sequence.
        threads: torch intra-op threads (0 = leave torch's default).
        model_samples: Sequences (train + validation) per timed run of each model option; 0 skips them.
        models: Labels of :data:`MODEL_OPTIONS` to time (empty: all).
        reference_adam: The Adam of the plain loop and the bare Trainer: ``tutorial`` (lr 0.01, torch's
            default kernel, as the tutorial and a hand-written loop have it) or ``fused`` (the project's
            default, ``DEFAULT_ADAM_ARGS``: then every contestant runs the same optimizer kernel, and
            ``lightning_vs_plain`` is the framework's cost alone).
    """

    accelerator: str = "cpu"
    precision: str = "32-true"
    num_samples: int = 200_000
    batch_size: int = 256
    hidden_size: int = 32
    epochs: int = 2
    rounds: int = 5
    seq_len: int = 20
    threads: int = 0
    model_samples: int = 32_000
    models: list[str] = field(default_factory=list)
    reference_adam: str = "tutorial"


@dataclass
class RunRecord:
    """What one timed run did and how long it took.

    Attributes:
        wall_s: Wall seconds of the training + validation loop (``trainer.fit`` for the Trainer path).
        cpu_s: CPU seconds of this process over the same span.
        train_samples: Training samples seen, all epochs together.
        steps: Optimizer steps.
        val_samples: Validation samples seen after the last epoch.
        train_losses: Mean training loss of each epoch.
        val_losses: Validation loss after each epoch.
    """

    wall_s: float
    cpu_s: float
    train_samples: int
    steps: int
    val_samples: int
    train_losses: list[float]
    val_losses: list[float]


def _device(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def reference_adam(parameters: Iterable[torch.nn.Parameter], cfg: BenchConfig) -> torch.optim.Adam:
    """The plain loop's and the bare Trainer's optimizer: the tutorial's Adam or the project's fused one."""
    from bigru_lightning.module import DEFAULT_ADAM_ARGS

    return torch.optim.Adam(parameters, **(DEFAULT_ADAM_ARGS if cfg.reference_adam == "fused" else {"lr": 0.01}))


def _datamodule(cfg: BenchConfig) -> GaussianDataModule:
    dm = GaussianDataModule(
        samples_per_class=cfg.num_samples // 2,
        seq_len=cfg.seq_len,
        test_samples_per_class=max(2, cfg.batch_size // 2),
        batch_size=cfg.batch_size,
        seed=SEED,
    )
    dm.setup("fit")
    return dm


def _cli_args(cfg: BenchConfig, model_args: Sequence[str] = ()) -> list[str]:
    return [
        "--data.samples_per_class",
        str(cfg.num_samples // 2),
        "--data.seq_len",
        str(cfg.seq_len),
        "--data.test_samples_per_class",
        str(max(2, cfg.batch_size // 2)),
        "--data.batch_size",
        str(cfg.batch_size),
        "--model.hidden_size",
        str(cfg.hidden_size),
        *model_args,
        "--trainer.max_epochs",
        str(cfg.epochs),
        "--trainer.accelerator",
        cfg.accelerator,
        "--trainer.precision",
        cfg.precision,
        "--trainer.enable_progress_bar",
        "false",
    ]


# -- the contestants ---------------------------------------------------------------------------------
def run_plain(cfg: BenchConfig) -> RunRecord:
    """Train with a plain PyTorch loop doing the Trainer path's work; time the training/validation loop."""
    device = _device(cfg.accelerator)
    dm = _datamodule(cfg)
    assert dm.train_split is not None and dm.val_split is not None
    x_train, y_train = dm.train_split.x.to(device), dm.train_split.y.to(device)
    x_val, y_val = dm.val_split.x.to(device), dm.val_split.y.to(device)
    # The same per-epoch permutation as the project's batcher, so that both see the same batches.
    order_of = TensorBatcher((y_train,), batch_size=cfg.batch_size, shuffle=True, seed=dm.seed)
    torch.manual_seed(SEED)
    net = BiGRU(input_size=dm.num_features, hidden_size=cfg.hidden_size, num_classes=dm.num_classes).to(device)
    mean = torch.zeros(dm.num_features, device=device)
    std = torch.ones(dm.num_features, device=device)
    class_weight = torch.ones(dm.num_classes, device=device)
    optimizer = reference_adam(net.parameters(), cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision.startswith("16"))
    n_train, n_val = x_train.shape[0], x_val.shape[0]
    train_losses: list[float] = []
    val_losses: list[float] = []
    steps = seen = 0
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(cfg.epochs):
        net.train()
        order = order_of.epoch_indices(epoch)
        assert order is not None
        order = order.to(device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for begin in range(0, n_train, cfg.batch_size):
            index = order[begin : begin + cfg.batch_size]
            x, y = x_train.index_select(0, index), y_train.index_select(0, index)
            with _autocast(device, cfg.precision):
                logits = net((x - mean) / std)
                loss = functional.cross_entropy(logits, y, weight=class_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double() * y.shape[0]
            correct += (logits.detach().argmax(dim=-1) == y).sum()
            steps += 1
            seen += y.shape[0]
        net.eval()
        val_loss = torch.zeros((), dtype=torch.float64, device=device)
        val_correct = torch.zeros((), dtype=torch.int64, device=device)
        with torch.inference_mode():
            for begin in range(0, n_val, cfg.batch_size):
                x, y = x_val[begin : begin + cfg.batch_size], y_val[begin : begin + cfg.batch_size]
                with _autocast(device, cfg.precision):
                    logits = net((x - mean) / std)
                    loss = functional.cross_entropy(logits, y, weight=class_weight)
                val_loss += loss.double() * y.shape[0]
                val_correct += (logits.argmax(dim=-1) == y).sum()
        # One host read per epoch, as the Trainer's epoch-end logging does.
        train_losses.append(float(loss_sum) / n_train)
        val_losses.append(float(val_loss) / n_val)
    _sync(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return RunRecord(wall, cpu, seen, steps, n_val, train_losses, val_losses)


@contextlib.contextmanager
def _in_temp_dir() -> Iterator[None]:
    """Run inside a fresh temporary folder (the Trainer's logs and checkpoints go there)."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bigru-bench-") as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(previous)


@contextlib.contextmanager
def _lightning_log_level(level: int) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous, strict=True):
            logger.setLevel(old)


def _work_recorder() -> Any:
    """A callback that counts the samples and reads the losses of each epoch (the Trainer's own numbers)."""
    from lightning.pytorch.callbacks import Callback

    class WorkRecorder(Callback):
        def __init__(self) -> None:
            self.train_samples = 0
            self.val_samples = 0
            self.train_losses: list[float] = []
            self.val_losses: list[float] = []

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.train_samples += int(batch[1].shape[0])

        def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.val_samples = 0

        def on_validation_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            if not trainer.sanity_checking:
                self.val_samples += int(batch[1].shape[0])

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # Callbacks run before the module's hook, which logs and resets the epoch's loss.
            self.train_losses.append(float(pl_module.epoch_loss("train")))
            self.val_losses.append(float(trainer.callback_metrics.get("val/loss", math.nan)))

    return WorkRecorder()


def run_lightning(cfg: BenchConfig, dataloader: bool = False, model_args: Sequence[str] = ()) -> RunRecord:
    """Train through the project's CLI-built Trainer; time ``trainer.fit``.

    With ``dataloader=True`` the same Trainer and module are fed ``DataLoader(TensorDataset)``.
    ``model_args`` are extra ``--model.*`` options (the model option rows).
    """
    from bigru_lightning.cli import hand_data_facts_to_model, make_cli, quiet_known_warnings

    quiet_known_warnings()
    quiet = contextlib.redirect_stdout(io.StringIO())  # the epoch lines; the plain loop prints none either
    with _in_temp_dir(), quiet, _lightning_log_level(logging.WARNING):
        cli = make_cli(_cli_args(cfg, model_args))
        dm = cli.datamodule
        dm.setup("fit")
        hand_data_facts_to_model(dm, cli.model)
        trainer = cli.trainer
        recorder = _work_recorder()
        trainer.callbacks.append(recorder)  # type: ignore[attr-defined]
        fit_kwargs: dict[str, Any] = {"datamodule": dm}
        if dataloader:
            assert dm.train_split is not None and dm.val_split is not None
            fit_kwargs = {
                "train_dataloaders": DataLoader(
                    TensorDataset(*dm.train_split.tensors()), batch_size=cfg.batch_size, shuffle=True
                ),
                "val_dataloaders": DataLoader(TensorDataset(*dm.val_split.tensors()), batch_size=cfg.batch_size),
            }
        device = _device(cfg.accelerator)
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(cli.model, **fit_kwargs)
        _sync(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return RunRecord(
        wall,
        cpu,
        recorder.train_samples,
        int(trainer.global_step),
        recorder.val_samples,
        recorder.train_losses,
        recorder.val_losses,
    )


def _bare_module(cfg: BenchConfig, num_features: int, num_classes: int) -> Any:
    """The least LightningModule for the plain loop's work: its step, its scaling and loss, its epoch sums."""
    import lightning.pytorch as pl

    class BareModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = BiGRU(input_size=num_features, hidden_size=cfg.hidden_size, num_classes=num_classes)
            self.register_buffer("mean", torch.zeros(num_features))
            self.register_buffer("std", torch.ones(num_features))
            self.register_buffer("class_weight", torch.ones(num_classes))
            self.sums = {stage: [torch.zeros((), dtype=torch.float64), 0] for stage in ("train", "val")}
            self.losses: dict[str, list[float]] = {"train": [], "val": []}
            self.train_samples = self.val_samples = 0

        def _step(self, batch: Sequence[torch.Tensor], stage: str) -> torch.Tensor:
            x, y = batch[0], batch[1]
            loss = functional.cross_entropy(self.net((x - self.mean) / self.std), y, weight=self.class_weight)
            self.sums[stage][0] = self.sums[stage][0].to(loss.device) + loss.detach().double() * y.shape[0]
            self.sums[stage][1] += int(y.shape[0])
            return loss

        def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self._step(batch, "train")

        def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
            self._step(batch, "val")

        def _close_epoch(self, stage: str) -> None:  # one host read per epoch, as the plain loop
            total, count = self.sums[stage]
            self.losses[stage].append(float(total) / max(count, 1))
            self.sums[stage] = [torch.zeros((), dtype=torch.float64), 0]
            if stage == "train":
                self.train_samples += count
            else:
                self.val_samples = count

        def on_train_epoch_end(self) -> None:
            self._close_epoch("train")

        def on_validation_epoch_end(self) -> None:
            self._close_epoch("val")

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return reference_adam(self.parameters(), cfg)

    return BareModule()


def run_lightning_bare(cfg: BenchConfig) -> RunRecord:
    """Lightning's loop with nothing of the project's around it (the floor); time ``trainer.fit``."""
    import lightning.pytorch as pl

    dm = _datamodule(cfg)
    torch.manual_seed(SEED)
    module = _bare_module(cfg, dm.num_features, dm.num_classes)
    device = _device(cfg.accelerator)
    with _in_temp_dir(), _lightning_log_level(logging.WARNING):
        trainer = pl.Trainer(
            accelerator=cfg.accelerator,
            devices=1,
            precision=cfg.precision,  # type: ignore[arg-type]
            max_epochs=cfg.epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(module, train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader())
        _sync(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return RunRecord(
        wall,
        cpu,
        module.train_samples,
        int(trainer.global_step),
        module.val_samples,
        module.losses["train"],
        module.losses["val"],
    )


# -- the same work -----------------------------------------------------------------------------------
def same_work_problems(
    records: dict[str, RunRecord], loss_factor: float = 10.0, solved_loss: float = 0.01
) -> list[str]:
    """Why the training contestants did not do the same work (empty when they did).

    Same training samples, optimizer steps and validation samples; each epoch's training and validation
    loss within a factor ``loss_factor`` of the plain loop's (the same order: shuffles may differ), or
    both under ``solved_loss`` (both have solved the task; the ratio of two losses near zero says nothing).
    """
    reference_name = next(iter(records))
    reference = records[reference_name]
    problems = []
    for name, record in records.items():
        for what in ("train_samples", "steps", "val_samples"):
            if getattr(record, what) != getattr(reference, what):
                problems.append(f"{name} {what} {getattr(record, what)} != {reference_name} {getattr(reference, what)}")
        for what in ("train_losses", "val_losses"):
            ours, theirs = getattr(record, what), getattr(reference, what)
            if len(ours) != len(theirs):
                problems.append(f"{name} has {len(ours)} {what}, {reference_name} {len(theirs)}")
                continue
            for epoch, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                valid = math.isfinite(a) and math.isfinite(b) and a >= 0 and b >= 0
                both_solved = max(a, b) < solved_loss
                if not valid or not (both_solved or (min(a, b) > 0 and max(a, b) / min(a, b) <= loss_factor)):
                    problems.append(f"{name} {what}[{epoch}] {a:.4g} vs {reference_name} {b:.4g}")
    return problems


# -- loader alone ------------------------------------------------------------------------------------
def _drain(batches: Iterable[Sequence[torch.Tensor]], device: torch.device) -> int:
    count = 0
    for batch in batches:
        if batch[0].device != device:
            batch = [t.to(device, non_blocking=True) for t in batch]
        count += int(batch[0].shape[0])
    _sync(device)
    return count


def _samples_per_s(make_epoch: Callable[[int], Iterable[Sequence[torch.Tensor]]], device: torch.device) -> float:
    """Samples/s over whole shuffled epochs, repeated until at least 0.2 s have passed (short timings are noise)."""
    samples, epoch, start = 0, 0, time.perf_counter()
    while True:
        samples += _drain(make_epoch(epoch), device)
        epoch += 1
        elapsed = time.perf_counter() - start
        if elapsed >= 0.2:
            return samples / elapsed


def loader_rounds(cfg: BenchConfig) -> list[dict[str, float]]:
    """Samples/s of shuffled training epochs, the batcher alone and ``DataLoader(TensorDataset)`` alone.

    Each delivers batches on the training device (the batcher holds the data there when it is an
    accelerator, as the DataModule does; the DataLoader's batches are copied). One warm-up each, then
    ``cfg.rounds`` interleaved rounds.
    """
    device = _device(cfg.accelerator)
    dm = _datamodule(cfg)
    assert dm.train_split is not None
    tensors = dm.train_split.tensors()
    batcher = TensorBatcher(tensors, batch_size=cfg.batch_size, shuffle=True, seed=SEED).to(device)
    loader = DataLoader(TensorDataset(*tensors), batch_size=cfg.batch_size, shuffle=True)

    def batcher_epoch(epoch: int) -> TensorBatcher:
        batcher.set_epoch(epoch)
        return batcher

    contestants: dict[str, Callable[[int], Iterable[Sequence[torch.Tensor]]]] = {
        "batcher": batcher_epoch,
        "dataloader": lambda _epoch: loader,
    }
    for make_epoch in contestants.values():  # warm-up
        _drain(make_epoch(0), device)
    rounds = []
    for index in range(cfg.rounds):
        rounds.append({name: _samples_per_s(contestants[name], device) for name in rotated(list(contestants), index)})
    return rounds


# -- model options -----------------------------------------------------------------------------------
def available_model_options(wanted: Sequence[str] = ()) -> tuple[dict[str, list[str]], list[str]]:
    """The rows of :data:`MODEL_OPTIONS` the installed model takes (``wanted``: those labels only), and the rest."""
    from bigru_lightning.model import POOLINGS
    from bigru_lightning.module import BiGRUClassifier

    accepted = set(inspect.signature(BiGRUClassifier.__init__).parameters)
    chosen, skipped = {}, []
    for label, args in MODEL_OPTIONS.items():
        if wanted and label not in wanted:
            continue
        names = {a.removeprefix("--model.") for a in args[::2]}
        pooling = args[args.index("--model.pooling") + 1] if "--model.pooling" in args else "final_state"
        if names <= accepted and pooling in POOLINGS:
            chosen[label] = args
        else:
            skipped.append(label)
    return chosen, skipped


def model_rounds(cfg: BenchConfig) -> tuple[list[dict[str, float]], list[str]]:
    """Training samples/s of each model option through the Trainer path at batch 256, interleaved rounds."""
    options, skipped = available_model_options(cfg.models)
    small = replace(cfg, num_samples=cfg.model_samples, batch_size=MODEL_BATCH_SIZE, epochs=1)
    for args in options.values():  # warm-up
        run_lightning(replace(small, num_samples=min(small.num_samples, 8 * MODEL_BATCH_SIZE)), model_args=args)
    rounds = []
    for index in range(cfg.rounds):
        timed = {label: run_lightning(small, model_args=options[label]) for label in rotated(list(options), index)}
        rounds.append({label: record.train_samples / record.wall_s for label, record in timed.items()})
    return rounds, skipped


# -- the whole benchmark -----------------------------------------------------------------------------
def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Warm up, run every contestant in interleaved rounds, check the work, and return medians and ranges."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    runners: dict[str, Callable[[BenchConfig], RunRecord]] = {
        "plain": run_plain,
        "lightning": run_lightning,
        "lightning_dataloader": lambda c: run_lightning(c, dataloader=True),
        "lightning_bare": run_lightning_bare,
    }
    warm_up = replace(cfg, num_samples=min(cfg.num_samples, 10 * cfg.batch_size), epochs=1)
    for name, runner in runners.items():
        runner(warm_up)
        log(f"warm-up: {name} done")
    rounds: list[dict[str, RunRecord]] = []
    for index in range(cfg.rounds):
        records = {name: runners[name](cfg) for name in rotated(TRAINING, index)}
        problems = same_work_problems({name: records[name] for name in TRAINING})
        if problems:
            raise RuntimeError("the contestants did not do the same work: " + "; ".join(problems))
        rounds.append(records)
        log(
            f"round {index + 1}/{cfg.rounds}: "
            + ", ".join(f"{n} {records[n].train_samples / records[n].wall_s:,.0f}/s" for n in TRAINING)
        )

    def ratio(numerator: str, denominator: str, seconds: str = "wall_s") -> Summary:
        return summarise(
            [getattr(r[denominator], seconds) / getattr(r[numerator], seconds) for r in rounds]  # time ratio inverted
        )

    loaders = loader_rounds(cfg)
    log("loader rounds: " + ", ".join(f"{r['batcher'] / r['dataloader']:.1f}" for r in loaders))
    models, skipped = model_rounds(cfg) if cfg.model_samples > 0 else ([], [])
    first = rounds[0]
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "device": str(_device(cfg.accelerator)),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "work": {name: asdict(replace(first[name], wall_s=0.0, cpu_s=0.0)) for name in TRAINING},
        "samples_per_s": {
            name: summarise([r[name].train_samples / r[name].wall_s for r in rounds]).as_dict() for name in TRAINING
        },
        "lightning_vs_plain": ratio("lightning", "plain").as_dict(),
        "lightning_vs_dataloader": ratio("lightning", "lightning_dataloader").as_dict(),
        "lightning_vs_bare": ratio("lightning", "lightning_bare").as_dict(),
        "bare_vs_plain": ratio("lightning_bare", "plain").as_dict(),
        "cpu_lightning_vs_plain": ratio("lightning", "plain", "cpu_s").as_dict(),
        "loader_samples_per_s": {
            name: summarise([r[name] for r in loaders]).as_dict() for name in ("batcher", "dataloader")
        },
        "loader_vs_dataloader": summarise([r["batcher"] / r["dataloader"] for r in loaders]).as_dict(),
        "models": {
            label: {
                "samples_per_s": summarise([r[label] for r in models]).as_dict(),
                "vs_default": summarise([r[label] / r[next(iter(r))] for r in models]).as_dict(),
            }
            for label in (models[0] if models else {})
        },
        "models_skipped": skipped,
    }
    if models:  # the rows in MODEL_OPTIONS order (rounds store them rotated)
        order = [label for label in MODEL_OPTIONS if label in result["models"]]
        result["models"] = {label: result["models"][label] for label in order}
        default = order[0]
        for label in order:
            result["models"][label]["vs_default"] = summarise([r[label] / r[default] for r in models]).as_dict()
    return result


def _summary(value: dict[str, Any], digits: int = 3, unit: str = "") -> str:
    return Summary(value["median"], value["low"], value["high"], value["rounds"], value["trusted"]).describe(
        digits, unit
    )


def format_report(result: dict[str, Any]) -> str:
    """The human-readable summary of :func:`run_benchmark`'s result."""
    cfg = result["config"]
    sps = result["samples_per_s"]
    loaders = result["loader_samples_per_s"]
    lines = [
        f"device {result['device']}, precision {cfg['precision']}, {cfg['num_samples']:,} sequences of "
        f"{cfg['seq_len']}x1, batch {cfg['batch_size']}, hidden {cfg['hidden_size']}, {cfg['epochs']} epochs, "
        f"{result['torch_threads']} threads, load average {result['load_average'][0]:.1f}, "
        f"{cfg['reference_adam']} Adam in the plain loop and the bare Trainer; "
        f"medians of {cfg['rounds']} interleaved rounds after a warm-up of each contestant",
        "same work: "
        + "; ".join(
            f"{name} {w['train_samples']:,} samples, {w['steps']} steps, val {w['val_samples']:,}, "
            f"last losses {w['train_losses'][-1]:.4f}/{w['val_losses'][-1]:.4f}"
            for name, w in result["work"].items()
        ),
        f"  (a) plain PyTorch loop:        {_summary(sps['plain'], 0, ' samples/s')}",
        f"  (b) project Trainer path:      {_summary(sps['lightning'], 0, ' samples/s')}",
        f"  (c) Lightning + DataLoader:    {_summary(sps['lightning_dataloader'], 0, ' samples/s')}",
        f"  (e) bare Lightning (floor):    {_summary(sps['lightning_bare'], 0, ' samples/s')}",
        f"  (d) TensorBatcher alone:       {_summary(loaders['batcher'], 0, ' samples/s')}",
        f"      DataLoader(TensorDataset): {_summary(loaders['dataloader'], 0, ' samples/s')}",
        f"lightning_vs_plain      {_summary(result['lightning_vs_plain'])}",
        f"lightning_vs_dataloader {_summary(result['lightning_vs_dataloader'])}",
        f"lightning_vs_bare       {_summary(result['lightning_vs_bare'])}  (the project's cost over Lightning's own)",
        f"bare_vs_plain           {_summary(result['bare_vs_plain'])}  (Lightning's loop over a plain loop)",
        f"loader_vs_dataloader    {_summary(result['loader_vs_dataloader'], 1)}",
        f"per CPU second: lightning_vs_plain {_summary(result['cpu_lightning_vs_plain'])}",
    ]
    if result["models"]:
        lines.append(f"model options, training samples/s through the Trainer at batch {MODEL_BATCH_SIZE}:")
        for label, row in result["models"].items():
            speed = _summary(row["samples_per_s"], 0, " samples/s")
            lines.append(f"  {label:<32} {speed}; vs default {row['vs_default']['median']:.2f}")
    if result["models_skipped"]:
        lines.append("model options not in this build (skipped): " + ", ".join(result["models_skipped"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, run the benchmark, print the report (or one JSON object with ``--json``)."""
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accelerator", default=defaults.accelerator, choices=["cpu", "gpu", "cuda", "auto"])
    parser.add_argument("--precision", default=defaults.precision, choices=["32-true", "32", "bf16-mixed", "16-mixed"])
    for name in ("num_samples", "batch_size", "hidden_size", "epochs", "rounds", "seq_len", "threads", "model_samples"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--models", nargs="*", default=[], help=f"model option rows to time: {list(MODEL_OPTIONS)}")
    parser.add_argument(
        "--reference_adam",
        default=defaults.reference_adam,
        choices=["tutorial", "fused"],
        help="Adam of the plain loop and the bare Trainer: the tutorial's, or the project's fused default",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    options = parser.parse_args(argv)
    cfg = BenchConfig(**{k: v for k, v in vars(options).items() if k != "json"})
    if cfg.num_samples < 4 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.rounds < 1 or cfg.model_samples < 0:
        parser.error("--num_samples must be >= 4, --batch_size, --epochs, --rounds >= 1 and --model_samples >= 0")
    unknown = [label for label in cfg.models if label not in MODEL_OPTIONS]
    if unknown:
        parser.error(f"--models {unknown}: not a row of MODEL_OPTIONS (accepted: {list(MODEL_OPTIONS)})")
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        parser.error(f"--accelerator {cfg.accelerator}: no CUDA device on this machine (accepted here: cpu, auto)")
    result = run_benchmark(cfg, log=(lambda _line: None) if options.json else print)
    print(json.dumps(result) if options.json else format_report(result), flush=True)
    return result


if __name__ == "__main__":
    main()
