"""Throughput benchmark: the project's Trainer path against a plain PyTorch loop and a standard DataLoader.

In one process, on the same generated data, model and batch size, it times

* ``plain``: a hand-written PyTorch loop doing the same work as the project's run (shuffled batches
  by index-select, Adam, cross-entropy, per-epoch train loss/accuracy, validation loss/accuracy
  after every epoch);
* ``lightning``: the project's Trainer path, built by the same CLI as ``scripts/fit.py`` (same
  module, DataModule, callbacks, checkpointing and TensorBoard logger);
* ``lightning_dataloader``: the same Trainer fed by ``DataLoader(TensorDataset)`` instead of the batcher;
* the batcher alone against ``DataLoader(TensorDataset)`` alone (one shuffled training epoch).

The three training variants run interleaved, ``--repeats`` rounds with a rotating order, so a load
change on a shared machine hits all of them; ratios are taken within each round, then the median.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

from bigru_lightning.data.batching import TensorBatcher
from bigru_lightning.data.gaussian_datamodule import GaussianDataModule
from bigru_lightning.model import BiGRU

SEED = 42
VARIANTS = ("plain", "lightning", "lightning_dataloader")


@dataclass
class BenchConfig:
    """What to run: the same settings for every variant.

    Attributes:
        accelerator: ``cpu``, ``gpu``/``cuda`` or ``auto``.
        precision: Lightning precision string: ``32-true``, ``bf16-mixed`` or ``16-mixed``.
        num_samples: Sequences generated for train + validation (split 80/20).
        batch_size: Sequences per batch.
        hidden_size: GRU hidden units per direction.
        epochs: Training epochs per timed run (validation after each).
        repeats: Interleaved rounds of the three training variants.
        seq_len: Time steps per sequence.
        threads: torch intra-op threads (0 = leave torch's default).
    """

    accelerator: str = "cpu"
    precision: str = "32-true"
    num_samples: int = 200_000
    batch_size: int = 256
    hidden_size: int = 32
    epochs: int = 2
    repeats: int = 3
    seq_len: int = 20
    threads: int = 0


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


def _cli_args(cfg: BenchConfig) -> list[str]:
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
        "--trainer.max_epochs",
        str(cfg.epochs),
        "--trainer.accelerator",
        cfg.accelerator,
        "--trainer.precision",
        cfg.precision,
        "--trainer.enable_progress_bar",
        "false",
    ]


def run_plain(cfg: BenchConfig) -> tuple[float, float]:
    """Train with a plain PyTorch loop; return the wall and CPU seconds of the training/validation loop."""
    device = _device(cfg.accelerator)
    dm = _datamodule(cfg)
    assert dm.train_split is not None and dm.val_split is not None
    x_train, y_train = dm.train_split.x.to(device), dm.train_split.y.to(device)
    x_val, y_val = dm.val_split.x.to(device), dm.val_split.y.to(device)
    torch.manual_seed(SEED)
    net = BiGRU(input_size=dm.num_features, hidden_size=cfg.hidden_size, num_classes=dm.num_classes).to(device)
    mean = torch.zeros(dm.num_features, device=device)
    std = torch.ones(dm.num_features, device=device)
    class_weight = torch.ones(dm.num_classes, device=device)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision.startswith("16"))
    n_train = x_train.shape[0]
    history: list[tuple[float, float, float, float]] = []
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(cfg.epochs):
        net.train()
        generator = torch.Generator().manual_seed(SEED + epoch)
        order = torch.randperm(n_train, generator=generator).to(device)
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
            correct += (logits.argmax(dim=-1) == y).sum()
        net.eval()
        val_loss = torch.zeros((), dtype=torch.float64, device=device)
        val_correct = torch.zeros((), dtype=torch.int64, device=device)
        with torch.no_grad():
            for begin in range(0, x_val.shape[0], cfg.batch_size):
                x, y = x_val[begin : begin + cfg.batch_size], y_val[begin : begin + cfg.batch_size]
                with _autocast(device, cfg.precision):
                    logits = net((x - mean) / std)
                    loss = functional.cross_entropy(logits, y, weight=class_weight)
                val_loss += loss.double() * y.shape[0]
                val_correct += (logits.argmax(dim=-1) == y).sum()
        history.append(
            (
                float(loss_sum) / n_train,
                float(correct) / n_train,
                float(val_loss) / x_val.shape[0],
                float(val_correct) / x_val.shape[0],
            )
        )
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


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


def run_lightning(cfg: BenchConfig, dataloader: bool = False) -> tuple[float, float]:
    """Train through the project's CLI-built Trainer; return the wall and CPU seconds of ``trainer.fit``.

    With ``dataloader=True`` the same Trainer and module are fed ``DataLoader(TensorDataset)``.
    """
    from bigru_lightning.cli import _quiet_known_warnings, hand_data_facts_to_model, make_cli

    _quiet_known_warnings()
    quiet = contextlib.redirect_stdout(io.StringIO())  # the epoch lines; the plain loop prints none either
    with _in_temp_dir(), quiet, _lightning_log_level(logging.WARNING):
        cli = make_cli(_cli_args(cfg))
        dm = cli.datamodule
        dm.setup("fit")
        hand_data_facts_to_model(dm, cli.model)
        trainer = cli.trainer
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
        return time.perf_counter() - start, time.process_time() - cpu_start


def _time_epoch(batches: Iterable[Sequence[torch.Tensor]], device: torch.device) -> float:
    start = time.perf_counter()
    for batch in batches:
        if batch[0].device != device:
            batch = [t.to(device, non_blocking=True) for t in batch]
    _sync(device)
    return time.perf_counter() - start


def loader_throughput(cfg: BenchConfig, repeats: int = 5) -> dict[str, float]:
    """Samples/s of one shuffled training epoch: the batcher alone and ``DataLoader(TensorDataset)`` alone.

    Each delivers batches on the training device (the batcher holds the data there when it is an
    accelerator, as the DataModule does; the DataLoader's batches are copied), best of ``repeats``.
    """
    device = _device(cfg.accelerator)
    dm = _datamodule(cfg)
    assert dm.train_split is not None
    tensors = dm.train_split.tensors()
    batcher = TensorBatcher(tensors, batch_size=cfg.batch_size, shuffle=True, seed=SEED).to(device)
    loader = DataLoader(TensorDataset(*tensors), batch_size=cfg.batch_size, shuffle=True)
    n = len(dm.train_split)
    best_batcher, best_loader = float("inf"), float("inf")
    for epoch in range(repeats):
        batcher.set_epoch(epoch)
        best_batcher = min(best_batcher, _time_epoch(batcher, device))
        best_loader = min(best_loader, _time_epoch(loader, device))
    return {"batcher_samples_per_s": n / best_batcher, "dataloader_samples_per_s": n / best_loader}


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every variant (interleaved rounds) and return throughputs, ratios and their spread."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    runners: dict[str, Callable[[], tuple[float, float]]] = {
        "plain": lambda: run_plain(cfg),
        "lightning": lambda: run_lightning(cfg),
        "lightning_dataloader": lambda: run_lightning(cfg, dataloader=True),
    }
    train_samples = len(_datamodule(cfg).train_split or [])
    work = train_samples * cfg.epochs
    rounds: list[dict[str, float]] = []
    cpu_rounds: list[dict[str, float]] = []
    for index in range(cfg.repeats):
        order = VARIANTS[index % 3 :] + VARIANTS[: index % 3]
        seconds = {name: runners[name]() for name in order}
        rounds.append({name: work / seconds[name][0] for name in VARIANTS})
        cpu_rounds.append({name: work / seconds[name][1] for name in VARIANTS})
        log(f"round {index + 1}/{cfg.repeats}: " + ", ".join(f"{n} {rounds[-1][n]:,.0f}/s" for n in VARIANTS))
    vs_plain = [r["lightning"] / r["plain"] for r in rounds]
    vs_dataloader = [r["lightning"] / r["lightning_dataloader"] for r in rounds]
    cpu_vs_plain = [r["lightning"] / r["plain"] for r in cpu_rounds]
    cpu_vs_dataloader = [r["lightning"] / r["lightning_dataloader"] for r in cpu_rounds]
    loaders = loader_throughput(cfg)
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "device": str(_device(cfg.accelerator)),
        "torch_threads": torch.get_num_threads(),
        "train_samples_per_epoch": train_samples,
        "samples_per_s": {name: statistics.median(r[name] for r in rounds) for name in VARIANTS},
        "rounds": rounds,
        "lightning_vs_plain": statistics.median(vs_plain),
        "lightning_vs_plain_range": [min(vs_plain), max(vs_plain)],
        "lightning_vs_dataloader": statistics.median(vs_dataloader),
        "lightning_vs_dataloader_range": [min(vs_dataloader), max(vs_dataloader)],
        "cpu_time_rounds": cpu_rounds,
        "cpu_time_lightning_vs_plain": statistics.median(cpu_vs_plain),
        "cpu_time_lightning_vs_dataloader": statistics.median(cpu_vs_dataloader),
        **loaders,
        "loader_vs_dataloader": loaders["batcher_samples_per_s"] / loaders["dataloader_samples_per_s"],
    }
    return result


def format_report(result: dict[str, Any]) -> str:
    """The human-readable summary of :func:`run_benchmark`'s result."""
    cfg = result["config"]
    sps = result["samples_per_s"]
    lines = [
        f"device {result['device']}, precision {cfg['precision']}, {cfg['num_samples']:,} sequences of "
        f"{cfg['seq_len']}x1, batch {cfg['batch_size']}, hidden {cfg['hidden_size']}, {cfg['epochs']} epochs, "
        f"{result['torch_threads']} threads, median of {cfg['repeats']} interleaved rounds",
        f"  (a) plain PyTorch loop:            {sps['plain']:>12,.0f} samples/s",
        f"  (b) project Trainer path:          {sps['lightning']:>12,.0f} samples/s",
        f"  (c) Lightning + DataLoader:        {sps['lightning_dataloader']:>12,.0f} samples/s",
        f"  (d) TensorBatcher alone:           {result['batcher_samples_per_s']:>12,.0f} samples/s",
        f"      DataLoader(TensorDataset):     {result['dataloader_samples_per_s']:>12,.0f} samples/s",
        "lightning_vs_plain      {:.3f} (rounds {:.3f}-{:.3f})".format(
            result["lightning_vs_plain"], *result["lightning_vs_plain_range"]
        ),
        "lightning_vs_dataloader {:.3f} (rounds {:.3f}-{:.3f})".format(
            result["lightning_vs_dataloader"], *result["lightning_vs_dataloader_range"]
        ),
        f"loader_vs_dataloader    {result['loader_vs_dataloader']:.1f}",
        "per CPU second instead of wall second: lightning_vs_plain {:.3f}, lightning_vs_dataloader {:.3f}".format(
            result["cpu_time_lightning_vs_plain"], result["cpu_time_lightning_vs_dataloader"]
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, run the benchmark, print the report (or one JSON object with ``--json``)."""
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accelerator", default=defaults.accelerator, choices=["cpu", "gpu", "cuda", "auto"])
    parser.add_argument("--precision", default=defaults.precision, choices=["32-true", "32", "bf16-mixed", "16-mixed"])
    for name in ("num_samples", "batch_size", "hidden_size", "epochs", "repeats", "seq_len", "threads"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    options = parser.parse_args(argv)
    cfg = BenchConfig(**{k: v for k, v in vars(options).items() if k != "json"})
    if cfg.num_samples < 4 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.repeats < 1:
        parser.error("--num_samples must be >= 4 and --batch_size, --epochs, --repeats >= 1")
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        parser.error(f"--accelerator {cfg.accelerator}: no CUDA device on this machine (accepted here: cpu, auto)")
    result = run_benchmark(cfg, log=(lambda _line: None) if options.json else print)
    print(json.dumps(result) if options.json else format_report(result), flush=True)
    return result
