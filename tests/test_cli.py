"""The CLI driven in-process through ``main(args=[...])``: the tutorial run, logs, config, resume, errors."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, script_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigru_lightning.cli import accelerators_here, expand_shorthands, main
from bigru_lightning.figures.plot_command import main as plot_main

EPOCH_LINE = re.compile(r"^Epoch \[(\d+)/(\d+)\], Train Loss: (\d+\.\d{4}), Validation Loss: (\d+\.\d{4})$")


def _epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if EPOCH_LINE.match(line)]


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], str]:
    """The default run (no arguments), once for the tests that inspect it."""
    folder = tmp_path_factory.mktemp("tutorial")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fit.py")],
        cwd=folder,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = {}
    for name in ("Test Accuracy", "Bayes-Optimal Accuracy"):
        match = re.search(rf"^{name}: (\d+\.\d\d)%$", result.stdout, re.M)
        assert match, result.stdout
        metrics[name] = float(match.group(1))
    return folder, metrics, result.stdout


def test_default_run_reproduces_the_tutorial(tutorial_run: tuple[Path, dict[str, float], str]) -> None:
    folder, metrics, stdout = tutorial_run
    lines = _epoch_lines(stdout)
    assert [EPOCH_LINE.match(line).group(1, 2) for line in lines] == [(str(e), "10") for e in range(1, 11)]  # type: ignore[union-attr]
    losses = [float(EPOCH_LINE.match(line).group(3)) for line in lines]  # type: ignore[union-attr]
    assert losses[0] > 0.5 and losses[-1] < 0.1  # it learns
    assert metrics["Test Accuracy"] == 100.0
    assert stdout.rstrip().splitlines()[-2] == "Test Accuracy: 100.00%"
    ckpts = sorted(p.name for p in (folder / "lightning_logs/version_0/checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(name.startswith("best-") for name in ckpts)


def test_tensorboard_has_every_scalar_and_hparams(tutorial_run: tuple[Path, dict[str, float], str]) -> None:
    folder = tutorial_run[0]
    scalars: dict[str, int] = {}
    plugins: set[str] = set()
    for events in (folder / "lightning_logs/version_0").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = scalars.get(tag, 0) + len(acc.Scalars(tag))
        with contextlib.suppress(KeyError):
            plugins |= set(acc.PluginTagToContent("hparams"))
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert scalars.get(tag) == 10, (tag, scalars)  # one point per epoch
    for tag in ("test/loss", "test/acc", "test/f1", "test/auroc", "test/bayes_acc"):
        assert scalars.get(tag) == 1, (tag, scalars)
    assert "_hparams_/session_start_info" in plugins


def test_saved_config_reproduces_the_run(
    tutorial_run: tuple[Path, dict[str, float], str], in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, first_stdout = tutorial_run
    config = folder / "lightning_logs/version_0/config.yaml"
    saved = yaml.safe_load(config.read_text())
    assert saved["model"]["hidden_size"] == 32 and saved["seed_everything"] == 42
    assert saved["optimizer"]["class_path"] == "torch.optim.Adam" and saved["optimizer"]["init_args"]["lr"] == 0.01
    assert saved["optimizer"]["init_args"]["fused"] is True  # torch's one-kernel Adam (DEFAULT_ADAM_ARGS)
    metrics = main(["--config", str(config)])
    assert _epoch_lines(capsys.readouterr().out) == _epoch_lines(first_stdout)
    assert metrics["test/acc"] == 1.0


def test_overrides_and_shorthands(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = main(
        [
            "--accelerator=cpu",
            "--devices",
            "1",
            "--model.hidden_size",
            "8",
            "--model.pooling",
            "last_step",
            "--optimizer",
            "SGD",
            "--optimizer.lr",
            "0.05",
            "--trainer.max_epochs",
            "2",
            "--data.batch_size",
            "40",
        ]
    )
    assert "test/acc" in metrics
    hparams = yaml.safe_load((in_tmp / "lightning_logs/version_0/hparams.yaml").read_text())
    assert hparams["hidden_size"] == 8 and hparams["pooling"] == "last_step"
    config = yaml.safe_load((in_tmp / "lightning_logs/version_0/config.yaml").read_text())
    assert config["optimizer"]["class_path"] == "torch.optim.SGD"
    assert config["trainer"]["accelerator"] == "cpu"
    assert len(_epoch_lines(capsys.readouterr().out)) == 2


def test_expand_shorthands() -> None:
    assert expand_shorthands(["--accelerator", "gpu", "--precision=bf16-mixed", "--model.x", "1"]) == [
        "--trainer.accelerator",
        "gpu",
        "--trainer.precision=bf16-mixed",
        "--model.x",
        "1",
    ]


def test_print_config_shows_the_defaults(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"].endswith("GaussianDataModule")
    assert printed["data"]["init_args"]["samples_per_class"] == 50
    assert not (in_tmp / "lightning_logs").exists()


def test_resume_from_last_continues_the_same_run(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--trainer.max_epochs", "6"])
    uninterrupted = _epoch_lines(capsys.readouterr().out)
    main(["--trainer.max_epochs", "3"])
    first = _epoch_lines(capsys.readouterr().out)
    ckpt_dir = in_tmp / "lightning_logs/version_1/checkpoints"
    assert (ckpt_dir / "last.ckpt").is_file()
    main(["--trainer.max_epochs", "6", "--ckpt_path", "last"])
    resumed = _epoch_lines(capsys.readouterr().out)
    assert [line.split(",")[0] for line in resumed] == ["Epoch [4/6]", "Epoch [5/6]", "Epoch [6/6]"]
    # same numbers as the uninterrupted run, once the epoch counter's denominator is aligned
    assert [line.split("]", 1)[1] for line in first + resumed] == [line.split("]", 1)[1] for line in uninterrupted]
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0", "version_1"]
    acc = EventAccumulator(str(_events_in_write_order(in_tmp / "lightning_logs/version_1", in_tmp / "ordered")))
    acc.Reload()
    steps = sorted(event.step for event in acc.Scalars("val/loss"))
    assert steps == sorted(set(steps)) and len(steps) == 6  # continued, not restarted or duplicated


def _events_in_write_order(run_dir: Path, copy_dir: Path) -> Path:
    """A copy of ``run_dir``'s event files whose names sort in the order they were written.

    TensorBoard reads a run's event files in name order (``...tfevents.<second>.<host>.<pid>.<n>``) and
    applies a resumed writer's purge to the files read before it. Files that one process opened within
    the same second sort wrongly once ``n`` reaches 10 (``.10`` before ``.9``), as they do when the whole
    of this file runs in one process; the copy pads ``n`` with zeros.
    """
    copy_dir.mkdir()
    for event_file in run_dir.glob("events.out.tfevents.*"):
        stem, _, number = event_file.name.rpartition(".")
        (copy_dir / f"{stem}.{int(number):06d}").write_bytes(event_file.read_bytes())
    return copy_dir


def test_default_root_dir_holds_the_runs_and_ckpt_path_last_and_plot_follow_it(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--trainer.default_root_dir DIR`` moves logs, checkpoints, config and figures, as with Lightning's logger."""
    root = ["--trainer.default_root_dir", "runs", "--data.samples_per_class", "20"]
    main(["--trainer.max_epochs", "2", *root])
    run = in_tmp / "runs/lightning_logs/version_0"
    for written in ("checkpoints/last.ckpt", "config.yaml", "hparams.yaml", "confusion_matrix.json"):
        assert (run / written).is_file(), written
    assert not (in_tmp / "lightning_logs").exists()
    capsys.readouterr()
    main(["--trainer.max_epochs", "3", "--ckpt_path", "last", *root])  # resumes that run, in its folder
    assert [line.split(",")[0] for line in _epoch_lines(capsys.readouterr().out)] == ["Epoch [3/3]"]
    assert [p.name for p in (in_tmp / "runs/lightning_logs").iterdir()] == ["version_0"]
    assert plot_main([str(run)])[0] == run / "loss.png"
    with pytest.raises(SystemExit):  # plot.py given the root folder names the run to give it
        plot_main(["runs"])
    assert capsys.readouterr().err.strip().endswith("(give a run folder such as runs/lightning_logs/version_0)")
    # No logger: checkpoints go to DIR/checkpoints (Lightning's place), and --ckpt_path last finds them there.
    main(["--trainer.max_epochs", "1", "--trainer.logger", "false", *root])
    assert (in_tmp / "runs/checkpoints/last.ckpt").is_file()
    capsys.readouterr()
    main(["--trainer.max_epochs", "2", "--trainer.logger", "false", "--ckpt_path", "last", *root])
    assert [line.split(",")[0] for line in _epoch_lines(capsys.readouterr().out)] == ["Epoch [2/2]"]
    assert not (in_tmp / "lightning_logs").exists()


def test_ckpt_path_last_looks_in_checkpoint_dirpath(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data.samples_per_class", "10", "--checkpoint.dirpath", "ckpts"]
    main(["--trainer.max_epochs", "1", *args])
    assert (in_tmp / "ckpts/last.ckpt").is_file()
    capsys.readouterr()
    main(["--trainer.max_epochs", "2", "--ckpt_path", "last", *args])
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert [line.split(",")[0] for line in _epoch_lines(captured.out)] == ["Epoch [2/2]"]


def test_an_explicit_logger_save_dir_wins_over_default_root_dir(in_tmp: Path) -> None:
    root = ["--trainer.default_root_dir=runs", "--trainer.logger.save_dir=logs"]
    main(["--trainer.max_epochs=1", "--data.samples_per_class=10", *root])
    assert (in_tmp / "logs/lightning_logs/version_0/checkpoints/last.ckpt").is_file()
    assert not (in_tmp / "runs/lightning_logs").exists()


# The full catalogue of bad inputs (exit status, message, untouched files) is tests/test_errors.py.


def test_ckpt_path_last_without_a_checkpoint_warns_once_and_starts_afresh(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A preemptible job always launched with ``--ckpt_path last`` works on its first launch too."""
    args = ["--data.samples_per_class", "40", "--ckpt_path", "last"]
    main(["--trainer.max_epochs", "2", *args])
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "--ckpt_path" in line]
    assert warnings == [
        "warning: --ckpt_path last: no checkpoint in lightning_logs/version_*/checkpoints yet; starting afresh"
    ]
    assert [line.split(",")[0] for line in _epoch_lines(captured.out)] == ["Epoch [1/2]", "Epoch [2/2]"]
    assert (in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt").is_file()
    main(["--trainer.max_epochs", "4", *args])  # the same command, later: resumes that run
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert [line.split(",")[0] for line in _epoch_lines(captured.out)] == ["Epoch [3/4]", "Epoch [4/4]"]
    assert sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0"]


# An accelerator that this machine cannot run: not installed (tpu needs torch_xla; hpu lives outside
# Lightning now), no device (gpu, cuda, mps), or a typo. On a machine that has one, it is not refused.
MISSING_ACCELERATORS = ["tpu", "hpu", "gpuu"]
if not torch.cuda.is_available():
    MISSING_ACCELERATORS += ["cuda"] + ([] if torch.backends.mps.is_available() else ["gpu"])
if not torch.backends.mps.is_available():
    MISSING_ACCELERATORS.append("mps")


@pytest.mark.parametrize("accelerator", MISSING_ACCELERATORS)
def test_accelerator_this_machine_lacks_is_one_line_error(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], accelerator: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--accelerator", accelerator])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    accepted = ", ".join(accelerators_here())
    assert err.splitlines() == [
        f"error: --trainer.accelerator: expected one this machine has ({accepted}), got {accelerator}"
    ]
    assert "cpu" in accepted and accelerator not in accepted.split(", ")
    assert list(in_tmp.iterdir()) == []  # nothing written


def test_accelerators_here_follow_the_machine() -> None:
    here = accelerators_here()
    assert here[:2] == ["auto", "cpu"]
    assert ("cuda" in here) == torch.cuda.is_available() and ("gpu" in here) == ("cuda" in here or "mps" in here)


def test_threads_hold_while_fitting_and_testing_and_are_restored(in_tmp: Path) -> None:
    from lightning.pytorch.callbacks import Callback

    from bigru_lightning.cli import make_cli

    seen: dict[str, set[int]] = {"fit": set(), "test": set()}

    class CountThreads(Callback):
        def on_train_batch_start(self, *args: object) -> None:
            seen["fit"].add(torch.get_num_threads())

        def on_test_batch_start(self, *args: object) -> None:
            seen["test"].add(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cli = make_cli(["--data.samples_per_class", "20", "--trainer.max_epochs", "1", "--threads", "1"])
        cli.trainer.callbacks.append(CountThreads())  # type: ignore[attr-defined]
        cli.run()
        assert seen == {"fit": {1}, "test": {1}}
        assert torch.get_num_threads() == 2  # the caller's count again (the Python API fits in its process)
    finally:
        torch.set_num_threads(before)
