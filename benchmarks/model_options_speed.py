"""Training throughput (samples/second) of each model option against the plain BiGRU, on CPU.

One training step = forward, cross-entropy, backward, Adam step, on a batch of random sequences.
Contestants are interleaved round by round (the machine may be shared); the median and range over
the rounds are printed as a markdown table. Also times the previous implementation (``nn.GRU`` on a
``pack_padded_sequence``) against the packing-free GRU on the same variable-length batches.

    python benchmarks/model_options_speed.py --rounds 5 --batch_size 256 --time 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from bigru_lightning.model import BiGRU

CONTESTANTS: dict[str, dict[str, Any]] = {
    "BiGRU (tutorial: hidden 32, final_state)": {},
    "pooling: attention": {"pooling": "attention"},
    "conv_channels: [128, 256, 128] (kernels 8/5/3)": {"conv_channels": [128, 256, 128]},
    "downsample: 4": {"downsample": 4},
    "conv_channels [128, 256, 128] + downsample 4 + attention": {
        "conv_channels": [128, 256, 128],
        "downsample": 4,
        "pooling": "attention",
    },
    "rocket_features: 10000 (the file-data default's branch)": {"rocket_features": 10_000, "rocket_max_dilation": 12},
    "hidden 64 + rocket_features 10000 (the file-data default)": {
        "hidden_size": 64,
        "rocket_features": 10_000,
        "rocket_max_dilation": 12,
    },
}


class PackedBiGRU(nn.Module):
    """The previous implementation: ``nn.GRU`` on a packed batch, final states into the head."""

    def __init__(self, hidden_size: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, 2)."""
        if lengths is None:
            _, h_n = self.gru(x)
        else:
            _, h_n = self.gru(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
        return self.head(h_n[-2:].transpose(0, 1).reshape(x.shape[0], -1))


def step_function(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor | None
) -> Callable[[], None]:
    """One optimizer step of ``model`` on the fixed batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x, lengths), y).backward()
        optimizer.step()

    return step


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per contestant and round")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--time", type=int, default=100, help="padded length; variable lengths are in [time/2, time]")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.time, 1)
    y = torch.randint(0, 2, (args.batch_size,))
    lengths = torch.randint(args.time // 2, args.time + 1, (args.batch_size,))
    steps: dict[str, Callable[[], None]] = {}
    for name, options in CONTESTANTS.items():
        steps[name] = step_function(BiGRU(**options), x, y, None)
        steps[f"{name}, variable lengths"] = step_function(BiGRU(**options), x, y, lengths)
    steps["previous: nn.GRU + pack_padded_sequence, variable lengths"] = step_function(PackedBiGRU(), x, y, lengths)
    for step in steps.values():  # warm-up
        step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[name].append(args.steps * args.batch_size / (time.perf_counter() - start))
    print(f"batch {args.batch_size}, time {args.time}, {args.threads} thread(s), {args.rounds}x{args.steps} steps")
    print("| model | samples/s, median | range |")
    print("| --- | --- | --- |")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f}-{max(values):,.0f} |")


if __name__ == "__main__":
    main()
