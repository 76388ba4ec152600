"""The GRU's training step on the CPU: the hand-differentiated scan against ``nn.GRU``, and whole steps.

Times forward + backward of the recipe's network (:class:`~bigru_lightning.model.BiGRU` with the
recipe's options for each shape: hidden 64, FCN branch, random kernels, stride) plus an AdamW step,
once with the GRU layers through :mod:`bigru_lightning.model.gru_scan` (what training on the CPU runs)
and once through ``nn.GRU`` itself (the scan switched off). The shapes are the development sets'
(batch, steps, features, classes as the recipe batches them). Contestants interleaved in rounds;
milliseconds per step, median and range.

    python benchmarks/gru_scan_speed.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from bigru_lightning import recipe
from bigru_lightning.model import BiGRU, recurrent
from bigru_lightning.model.rocket import max_dilation_for

# (name, batch, steps, features, classes): the recipe's batch for each development set and example file.
SHAPES = [
    ("UnitTest", 4, 24, 1, 2),
    ("waves", 10, 40, 2, 3),
    ("PickupGestureWiimoteZ", 5, 361, 1, 10),
    ("OSULeaf", 20, 427, 1, 6),
    ("ACSF1", 10, 1460, 1, 10),
]


@contextmanager
def gru_path(scan: bool) -> Iterator[None]:
    """Run the GRU layers through the scan (``scan=True``, the default on the CPU) or through ``nn.GRU``."""
    original = recurrent.scan_applies
    if not scan:
        recurrent.scan_applies = lambda *_: False  # type: ignore[assignment]
    try:
        yield
    finally:
        recurrent.scan_applies = original


def training_step(batch: int, steps: int, features: int, classes: int) -> Callable[[], None]:
    """One recipe-network training step (forward, cross-entropy, backward, AdamW) on fixed random data."""
    torch.manual_seed(0)
    net = BiGRU(
        input_size=features,
        hidden_size=recipe.HIDDEN_SIZE,
        num_classes=classes,
        conv_channels=recipe.conv_channels(steps),
        downsample=recipe.downsample(steps),
        rocket_features=recipe.ROCKET_FEATURES,
        rocket_max_dilation=max_dilation_for(steps),
    )
    assert net.rocket is not None
    net.rocket.fit(torch.randn(64, steps, features))
    x, y = torch.randn(batch, steps, features), torch.randint(0, classes, (batch,))
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.LEARNING_RATE, fused=True)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(net(x), y, label_smoothing=recipe.LABEL_SMOOTHING)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def milliseconds(step: Callable[[], None], scan: bool, repeats: int) -> float:
    """Mean time of one step over ``repeats`` (after two warm-up steps), in ms."""
    with gru_path(scan):
        step()
        step()
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    """Print a markdown table: per shape, ms per training step with nn.GRU and with the scan, and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30, help="steps timed per contestant and round")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds, median (range)\n")
    print("| shape (batch x steps x features) | nn.GRU, ms/step | scan, ms/step | scan / nn.GRU |")
    print("| --- | --- | --- | --- |")
    for name, batch, steps, features, classes in SHAPES:
        step = training_step(batch, steps, features, classes)
        native, scanned, ratios = [], [], []
        for round_index in range(args.rounds):
            order = [False, True] if round_index % 2 == 0 else [True, False]
            times = {scan: milliseconds(step, scan, args.repeats) for scan in order}
            native.append(times[False])
            scanned.append(times[True])
            ratios.append(times[True] / times[False])
        print(
            f"| {name} ({batch} x {steps} x {features}) | {_cell(native)} | {_cell(scanned)} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    main()
