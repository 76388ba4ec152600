"""The test pass's metric work per batch: torchmetrics updated on every batch, or scored once at the end.

    python benchmarks/scoring_cost.py                 # 782 batches of 256, 2 classes, 7 rounds
    python benchmarks/scoring_cost.py --classes 5 --batches 200

Only the metric calls, on fixed random class probabilities (no network): ``per_batch`` updates the test
accuracy, macro F1, AUROC, confusion matrix and binned ROC on every batch (the project's test step before
session 9); ``at_end`` keeps the probabilities and calls ``BiGRUClassifier.score_test_predictions`` once
(the project's test pass now). The two run interleaved, in alternating order; each prints its median
and range in microseconds per batch, and the ratio at_end / per_batch within each round.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the peer modules importable as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rounds import Summary, rotated, summarise
from bigru_lightning.module import BiGRUClassifier


def scoring_rounds(classes: int, batches: int, batch_size: int, rounds: int) -> dict[str, Summary]:
    """Microseconds per batch of each way, and their ratio, over ``rounds`` interleaved rounds."""
    model = BiGRUClassifier(input_size=1, num_classes=classes)
    generator = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randn(batch_size, classes, generator=generator).softmax(dim=-1),
            torch.randint(0, classes, (batch_size,), generator=generator),
        )
        for _ in range(batches)
    ]
    collection = model._metrics("test")
    others = (model.test_confusion, model.test_roc)

    def per_batch() -> None:
        for probabilities, target in data:
            collection.update(probabilities, target)
            for metric in others:
                metric.update(probabilities, target)

    def at_end() -> None:
        kept = model._test_predictions()
        for probabilities, target in data:
            kept.update(probabilities, target)
        model.score_test_predictions()

    ways: dict[str, Callable[[], None]] = {"per_batch": per_batch, "at_end": at_end}
    times: dict[str, list[float]] = {name: [] for name in ways}
    with torch.inference_mode():  # as under the Trainer's test loop
        for index in range(rounds):
            for name in rotated(list(ways), index):
                for metric in (*collection.values(), *others):
                    metric.reset()
                start = time.perf_counter()
                ways[name]()
                times[name].append((time.perf_counter() - start) / batches * 1e6)
    ratios = [end / each for end, each in zip(times["at_end"], times["per_batch"], strict=True)]
    summaries = {name: summarise(values) for name, values in times.items()}
    return {**summaries, "ratio": summarise(ratios)}


def main(argv: Sequence[str] | None = None) -> dict[str, Summary]:
    """Parse the options, run the rounds, print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--batches", type=int, default=782, help="782: the scaled job's test set of 200,000")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    result = scoring_rounds(args.classes, args.batches, args.batch_size, args.rounds)
    for name in ("per_batch", "at_end"):
        print(f"{name:9} {result[name].describe(digits=0, unit=' us per batch')}")
    print(f"at_end / per_batch {result['ratio'].describe()}")
    return result


if __name__ == "__main__":
    main()
