"""What each branch of the file-data model is worth: the random-kernel head alone, BiGRU + kernels, and the gain.

A plain-PyTorch loop (no Lightning, so that it is quick) over one UCR set that aeon ships: the
training file standardised per feature, the random-kernel branch fitted once and its features computed
once (it is not trained), then for each variant 1,000 AdamW steps (lr 3e-3, weight decay 1e-2,
one-cycle schedule, label smoothing 0.1, gradient clipping 1) at a batch of a tenth of the training
set, as the recipe does, and the test accuracy:

- ``rocket``: a linear head on the random-kernel features alone (no GRU);
- ``joint:G``: the BiGRU (hidden 64, final-state pooling, the recipe's stride) and the features
  scaled by ``G`` times the branch's own scale, one linear head on both (the model's form);
  ``G = 1`` is the unit scale, the model uses :data:`bigru_lightning.model.rocket.GAIN`.

    python benchmarks/branch_ablation.py OSULeaf --variants rocket joint:0.333 joint:1 --seeds 0 1
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from bigru_lightning.model import BiGRU
from bigru_lightning.model.rocket import GAIN, RandomKernelBranch, max_dilation_for
from bigru_lightning.model.steps import full_lengths

Split = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]


def load(name: str) -> tuple[Split, Split]:
    """Train and test split of an aeon-shipped set: (x, lengths or None, y), standardised on the training split."""
    import aeon.datasets
    from aeon.datasets import load_from_ts_file

    folder = Path(aeon.datasets.__file__).parent / "data" / name
    splits = []
    for part in ("TRAIN", "TEST"):
        series, labels = load_from_ts_file(str(folder / f"{name}_{part}.ts"))
        if isinstance(series, np.ndarray):
            x, lengths = torch.tensor(series, dtype=torch.float32).transpose(1, 2), None
        else:
            longest = max(s.shape[1] for s in series)
            x = torch.zeros(len(series), longest, series[0].shape[0])
            lengths = torch.tensor([s.shape[1] for s in series])
            for row, s in enumerate(series):
                x[row, : s.shape[1]] = torch.tensor(s.T, dtype=torch.float32)
        splits.append((x, lengths, labels))
    time_steps = max(x.shape[1] for x, _, _ in splits)
    padded = [(functional.pad(x, (0, 0, 0, time_steps - x.shape[1])), n, y) for x, n, y in splits]
    (x_train, n_train, y_train), (x_test, n_test, y_test) = padded
    valid = torch.ones(x_train.shape[:2], dtype=torch.bool)
    if n_train is not None:
        valid = torch.arange(time_steps)[None] < n_train[:, None]
    mean, std = x_train[valid].mean(0), x_train[valid].std(0)
    classes = sorted(set(y_train))

    def encode(labels: np.ndarray) -> torch.Tensor:
        return torch.tensor([classes.index(label) for label in labels])

    return (
        ((x_train - mean) / std, n_train, encode(y_train)),
        ((x_test - mean) / std, n_test, encode(y_test)),
    )


def run_variant(
    variant: str, seed: int, train: Split, test: Split, features: tuple[torch.Tensor, torch.Tensor]
) -> float:
    """Test accuracy (%) of one variant trained with the recipe's optimizer, schedule and budget."""
    (x_train, n_train, y_train), (x_test, n_test, y_test) = train, test
    f_train, f_test = features
    kind, _, gain_text = variant.partition(":")
    gain = float(gain_text) if gain_text else 1.0
    torch.manual_seed(seed)
    num_classes = int(y_train.max()) + 1
    longest = int(n_train.max()) if n_train is not None else x_train.shape[1]
    net = BiGRU(x_train.shape[2], 64, 1, num_classes, downsample=max(1, math.ceil(longest / 160)))
    uses_gru = kind == "joint"
    head = torch.nn.Linear((2 * 64 if uses_gru else 0) + f_train.shape[1], num_classes)
    parameters = list(head.parameters()) + (list(net.rnn.parameters()) if uses_gru else [])
    steps, size = 1000, max(4, min(64, round(len(y_train) / 10)))
    optimizer = torch.optim.AdamW(parameters, lr=3e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1, cycle_momentum=False
    )

    def summary(x: torch.Tensor, lengths: torch.Tensor | None, kernel_features: torch.Tensor) -> torch.Tensor:
        if not uses_gru:
            return kernel_features
        short, short_lengths = net.downsample(x, lengths)
        out = net.rnn(short, short_lengths)
        pooled = net.pool(out, full_lengths(out) if short_lengths is None else short_lengths)
        return torch.cat([pooled, gain * kernel_features], dim=1)

    generator = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        index = torch.randint(len(y_train), (size,), generator=generator)
        lengths = n_train[index] if n_train is not None else None
        logits = head(summary(x_train[index], lengths, f_train[index]))
        loss = functional.cross_entropy(logits, y_train[index], label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        predicted = head(summary(x_test, n_test, f_test)).argmax(dim=1)
    return 100.0 * float((predicted == y_test).float().mean())


def main() -> None:
    """Print one line per variant and seed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a set aeon ships, e.g. OSULeaf")
    parser.add_argument("--variants", nargs="+", default=["rocket", f"joint:{1 / GAIN:.3f}", "joint:1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load(args.dataset)
    longest = int(train[1].max()) if train[1] is not None else train[0].shape[1]
    branch = RandomKernelBranch(train[0].shape[2], 10_000, max_dilation_for(longest))
    branch.fit(train[0], train[1])
    with torch.no_grad():
        features = (branch(train[0], train[1]), branch(test[0], test[1]))
    print(f"{args.dataset}: model gain GAIN = {GAIN}; joint:G scales the branch's output by G")
    for seed in args.seeds:
        for variant in args.variants:
            start = time.perf_counter()
            accuracy = run_variant(variant, seed, train, test, features)
            seconds = time.perf_counter() - start
            print(f"{args.dataset} {variant} seed {seed}: {accuracy:.2f}% ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
