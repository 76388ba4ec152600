"""Generate the small example files under ``examples/data/`` (no hand-typed data).

Three classes of noisy waves, ``sine``, ``square`` and ``sawtooth``, each with a random frequency,
phase and amplitude, plus a second feature that is a distracting random walk. Written as:

- ``waves.npz``: fixed length (40 steps, 2 features), integer labels 0/1/2, stored uncompressed
  (``np.savez``), so ``FileDataModule`` memory-maps it;
- ``waves_long.csv``: long format (``sequence_id, label, time, signal, drift``), 20 to 40 steps per
  sequence, string labels;
- ``waves_new.csv``: the same format without labels, for ``scripts/predict.py``;
- ``waves.ts``: the UCR/UEA format with unequal lengths and string labels (only when aeon is installed).

Run: ``python examples/make_examples.py`` (seeded: the same files every time).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CLASSES = ("sine", "square", "sawtooth")
OUT = Path(__file__).resolve().parent / "data"


def make_waves(count: int, min_len: int, max_len: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` sequences of shape (length, 2) and their class indices (balanced, shuffled)."""
    labels = rng.permutation(np.arange(count) % len(CLASSES))
    sequences = []
    for label in labels:
        length = int(rng.integers(min_len, max_len + 1))
        t = np.arange(length)
        phase = 2 * np.pi * (rng.uniform(0.06, 0.15) * t + rng.uniform(0, 1))
        if CLASSES[label] == "sine":
            wave = np.sin(phase)
        elif CLASSES[label] == "square":
            wave = np.sign(np.sin(phase))
        else:
            wave = 2 * ((phase / (2 * np.pi)) % 1.0) - 1
        signal = rng.uniform(0.5, 2.0) * wave + 0.3 * rng.standard_normal(length)
        drift = np.cumsum(0.2 * rng.standard_normal(length))
        sequences.append(np.round(np.stack([signal, drift], axis=1), 3))
    return sequences, labels


def write_long_csv(path: Path, sequences: list[np.ndarray], labels: np.ndarray | None, prefix: str) -> None:
    """One row per time step: sequence_id, [label,] time, signal, drift."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sequence_id", *(["label"] if labels is not None else []), "time", "signal", "drift"])
        for n, sequence in enumerate(sequences):
            label = [CLASSES[labels[n]]] if labels is not None else []
            for t, (signal, drift) in enumerate(sequence):
                writer.writerow([f"{prefix}{n:03d}", *label, t, f"{signal:.3f}", f"{drift:.3f}"])


def main() -> None:
    """Write every example file."""
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)

    fixed, fixed_labels = make_waves(120, 40, 40, rng)
    np.savez(OUT / "waves.npz", X=np.stack(fixed).astype(np.float32), y=fixed_labels.astype(np.int64))

    varied, varied_labels = make_waves(120, 20, 40, rng)
    write_long_csv(OUT / "waves_long.csv", varied, varied_labels, prefix="w")
    new, _ = make_waves(12, 20, 40, rng)
    write_long_csv(OUT / "waves_new.csv", new, None, prefix="new")

    try:
        from aeon.datasets import save_to_ts_file
    except ImportError:
        print("aeon is not installed: skipped waves.ts (pip install '.[ts]')")
    else:
        cases, case_labels = make_waves(120, 20, 40, rng)
        save_to_ts_file(
            X=[case.T for case in cases],  # aeon wants (channels, steps)
            y=np.array([CLASSES[k] for k in case_labels]),
            label_type="classification",
            path=str(OUT),
            problem_name="waves",
        )
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(OUT.parent.parent)}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
