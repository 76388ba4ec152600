"""Peak and current resident memory at each phase of one ``scripts/fit.py`` run (same options).

    python benchmarks/memory_phases.py --data.samples_per_class 100000 --data.batch_size 256 --trainer.max_epochs 3

Prints, after the imports, the recipe (a file run's read of its training file), the CLI, the start
of fit, the random-kernel branch's fit, every ``--every`` batches of training and test, each epoch
end, the test end, the Bayes oracle and the end of the run: the process's peak RSS so far
(``ru_maxrss``) and its RSS now. For a file run::

    python benchmarks/memory_phases.py --data FileDataModule --data.train_file big.csv --trainer.max_steps 5

A phase where the peak jumps is where memory goes. Runs in the current folder like ``scripts/fit.py``
(it writes the same ``lightning_logs/``).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

START = time.perf_counter()


def report(phase: str) -> None:
    """Print the peak RSS so far and the RSS now, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    now = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    print(
        f"[memory] {time.perf_counter() - START:7.1f}s  {phase:<30} peak {peak:7.0f} MiB  now {now:7.0f} MiB",
        flush=True,
    )


def main(argv: list[str]) -> None:
    """Run the fit command on ``argv`` with a reporting callback."""
    every = 200
    if "--every" in argv:
        index = argv.index("--every")
        every = int(argv[index + 1])
        del argv[index : index + 2]
    report("start")
    import torch  # noqa: F401  (timed and measured as a phase of its own)

    report("import torch")
    from lightning.pytorch.callbacks import Callback

    import bigru_lightning.cli as cli_module
    from bigru_lightning.data.gaussian_datamodule import GaussianDataModule

    report("import bigru_lightning.cli")

    class Phases(Callback):
        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            report("fit start (data ready)")

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx % every == 0:
                report(f"train batch {batch_idx}")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            report(f"epoch {trainer.current_epoch} end")

        def on_test_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            if batch_idx % every == 0:
                report(f"test batch {batch_idx}")

        def on_test_end(self, trainer: Any, pl_module: Any) -> None:
            report("test end (figures next)")

    make_cli = cli_module.make_cli

    def make_cli_with_phases(args: Any) -> Any:
        cli = make_cli(args)
        cli.trainer.callbacks.insert(0, Phases())  # type: ignore[attr-defined]
        report("CLI built")
        return cli

    bayes_accuracy = GaussianDataModule.bayes_accuracy

    def bayes_with_phases(self: GaussianDataModule) -> float:
        report("Bayes oracle start")
        value = bayes_accuracy(self)
        report("Bayes oracle end")
        return value

    from bigru_lightning.model.rocket import RandomKernelBranch

    apply_recipe = cli_module.apply_recipe
    rocket_fit = RandomKernelBranch.fit

    def recipe_with_phases(*args: Any) -> Any:
        report("recipe start (reads the file)")
        choices = apply_recipe(*args)
        report("recipe end")
        return choices

    def rocket_fit_with_phases(self: RandomKernelBranch, *args: Any, **kwargs: Any) -> None:
        report("random-kernel fit start")
        rocket_fit(self, *args, **kwargs)
        report("random-kernel fit end")

    cli_module.apply_recipe = recipe_with_phases  # type: ignore[assignment]
    RandomKernelBranch.fit = rocket_fit_with_phases  # type: ignore[method-assign]
    cli_module.make_cli = make_cli_with_phases  # type: ignore[assignment]
    GaussianDataModule.bayes_accuracy = bayes_with_phases  # type: ignore[method-assign]
    cli_module.main(argv)
    report("end")


if __name__ == "__main__":
    main(sys.argv[1:])
