"""The data-adaptive recipe for file data: the decision, and the CLI that prints, saves and obeys it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from bigru_lightning.cli import main
from bigru_lightning.recipe import DataFacts, choose_recipe

AUTO_LINE = re.compile(r"^(\S+): auto -> (.+) \((.+)\)$", re.M)
WAVES = str(REPO / "examples" / "data" / "waves.npz")


def _values(facts: DataFacts, fixed: dict | None = None) -> dict:
    return {choice.key: choice.value for choice in choose_recipe(facts, fixed)}


def test_small_file_trains_on_everything_with_batches_of_a_tenth() -> None:
    values = _values(DataFacts(train_sequences=200, max_length=100, num_features=1, num_classes=6))
    assert values["data.val_fraction"] == 0.0
    assert values["checkpoint.monitor"] is None  # no validation: the last weights are tested
    assert values["data.batch_size"] == 20
    assert values["trainer.max_epochs"] == 70  # 700 steps at 10 batches per epoch
    schedule = values["lr_scheduler"]["init_args"]
    assert schedule["total_steps"] == 70 and schedule["max_lr"] == values["optimizer"]["init_args"]["lr"]
    assert "model.downsample" not in values  # 100 steps: no stride
    assert values["checkpoint.every_n_epochs"] == 7  # 10 checkpoints (none to choose from), the last among them
    assert values["model.rocket_features"] == 10_000 and values["model.rocket_max_dilation"] == 12  # 99 // 8


def test_checkpoint_interval_divides_the_epochs() -> None:
    from bigru_lightning.recipe import checkpoint_interval

    assert checkpoint_interval(10) == 1 and checkpoint_interval(600) == 12
    assert checkpoint_interval(101) == 1 and checkpoint_interval(150) == 3
    assert checkpoint_interval(100, 10) == 10 and checkpoint_interval(91, 10) == 7


def test_a_run_that_may_stop_between_epochs_keeps_fifty_checkpoints() -> None:
    facts = DataFacts(train_sequences=200, max_length=100, num_features=1, num_classes=6)
    batches = {"data.batch_size": 29}  # 7 batches per epoch: 100 epochs
    assert _values(facts, {**batches, "trainer.max_steps": 20})["checkpoint.every_n_epochs"] == 2
    assert _values(facts, {**batches, "trainer.max_time": "00:00:01:00"})["checkpoint.every_n_epochs"] == 2
    assert _values(facts, {**batches, "trainer.max_steps": -1})["checkpoint.every_n_epochs"] == 10  # "no limit"


def test_a_validation_split_keeps_fifty_checkpoints_to_choose_the_best_from() -> None:
    values = _values(DataFacts(train_sequences=1000, max_length=100, num_features=1, num_classes=6))
    assert values["data.val_fraction"] == 0.2 and "checkpoint.monitor" not in values  # val/loss chooses
    epochs = values["trainer.max_epochs"]
    assert epochs // values.get("checkpoint.every_n_epochs", 1) >= 40  # Lightning's default: every epoch


def test_batch_size_stays_within_bounds_and_never_exceeds_the_data() -> None:
    assert _values(DataFacts(20, 24, 1, 2))["data.batch_size"] == 4
    assert _values(DataFacts(3, 24, 1, 2))["data.batch_size"] == 3
    assert _values(DataFacts(400, 24, 1, 2))["data.batch_size"] == 40
    large = _values(DataFacts(10_000, 24, 1, 2))
    assert large["data.batch_size"] == 64 and large["data.val_fraction"] == 0.2
    assert "checkpoint.monitor" not in large  # a validation split: the best checkpoint is tested


def test_long_sequences_get_a_stride_and_kernels_that_span_them() -> None:
    short = _values(DataFacts(100, 300, 1, 10))
    long = _values(DataFacts(100, 1460, 1, 10))
    assert long["model.downsample"] == 10 and short["model.downsample"] == 2
    assert long["model.rocket_max_dilation"] == 182 and short["model.rocket_max_dilation"] == 37
    # the FCN branch reads every step: narrower on longer series, its cost ~ length x width^2 bounded
    assert short["model.conv_channels"] == [40, 80, 40] and long["model.conv_channels"] == [16, 32, 16]
    assert _values(DataFacts(100, 160, 1, 10))["model.conv_channels"] == [64, 128, 64]


def test_conv_width_keeps_the_branch_cost_bounded() -> None:
    from bigru_lightning.recipe import CONV_WIDTH, GRU_STEPS, conv_channels

    for length in range(1, 5000, 7):
        channels = conv_channels(length)
        w = channels[0]
        assert channels == [w, 2 * w, w] and w % 8 == 0 and 16 <= w <= CONV_WIDTH
        if length <= GRU_STEPS:
            assert w == CONV_WIDTH
        elif w > 16:  # above the floor: the largest multiple of 8 within the cost of GRU_STEPS steps
            assert length * w**2 <= GRU_STEPS * CONV_WIDTH**2 < length * (w + 8) ** 2


def test_small_batches_train_on_one_thread_and_the_users_count_wins() -> None:
    assert _values(DataFacts(200, 100, 1, 6))["threads"] == 1  # batches of 20
    assert "threads" not in _values(DataFacts(2000, 100, 1, 6))  # batches of 64: torch's default
    assert "threads" not in _values(DataFacts(200, 100, 1, 6), {"threads": 2})
    assert _values(DataFacts(2000, 100, 1, 6), {"data.batch_size": 8})["threads"] == 1  # the user's batch counts


def test_values_follow_the_users_own() -> None:
    facts = DataFacts(200, 100, 1, 6)
    values = _values(facts, {"data.batch_size": 50, "optimizer": object(), "optimizer.lr": 0.01})
    assert "data.batch_size" not in values and "optimizer" not in values
    assert values["trainer.max_epochs"] == 175  # 700 steps at 4 batches of 50
    assert values["lr_scheduler"]["init_args"]["max_lr"] == 0.01
    values = _values(facts, {"trainer.max_epochs": 7, "data.val_fraction": 0.25})
    assert values["lr_scheduler"]["init_args"]["total_steps"] == 7
    assert values["data.batch_size"] == 15 and "checkpoint.monitor" not in values
    assert "trainer.max_epochs" not in values and "data.val_fraction" not in values


@pytest.mark.parametrize("epochs", [1, 2, 3, 9, 10, 11, 20, 100])
def test_the_schedule_runs_for_any_number_of_epochs(epochs: int) -> None:
    """OneCycleLR divides by zero when pct_start x total_steps is 1 (10 epochs at 10%): the recipe avoids it."""
    import torch

    values = _values(DataFacts(96, 40, 2, 4), {"trainer.max_epochs": epochs})
    init = values["lr_scheduler"]["init_args"]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=init["max_lr"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, **init)
    rates = []
    for epoch in range(epochs):  # as Lightning steps an epoch-interval schedule: after each epoch but the last
        optimizer.step()
        rates.append(optimizer.param_groups[0]["lr"])
        if epoch < epochs - 1:
            schedule.step()
    assert all(rate > 0 for rate in rates) and rates[-1] <= init["max_lr"]


def test_mixed_precision_gets_an_unfused_optimizer() -> None:
    """Lightning refuses to clip a fused optimizer's gradients under *-mixed precision (it unscales them itself)."""
    fused = _values(DataFacts(96, 40, 2, 4))["optimizer"]["init_args"]
    unfused = {c.key: c.value for c in choose_recipe(DataFacts(96, 40, 2, 4), mixed_precision=True)}
    assert fused["fused"] is True
    assert "fused" not in unfused["optimizer"]["init_args"]


def test_a_mixed_precision_file_run_clips_and_trains(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data", "FileDataModule", "--data.train_file", WAVES, "--trainer.max_epochs", "1"]
    metrics, out = _run([*args, "--trainer.precision", "bf16-mixed"], capsys)
    assert "weight decay 0.01)" in out and "fused" not in out
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_a_given_validation_file_is_kept() -> None:
    values = _values(DataFacts(40, 24, 1, 2, has_val_file=True))
    assert "data.val_fraction" not in values and "checkpoint.monitor" not in values


def test_no_data_is_refused() -> None:
    with pytest.raises(ValueError):
        choose_recipe(DataFacts(0, 10, 1, 2))


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, float], str]:
    metrics = main(args)
    return metrics, capsys.readouterr().out


def test_cli_prints_saves_and_reproduces_the_auto_values(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data", "FileDataModule", "--data.train_file", WAVES, "--trainer.max_epochs", "2"]
    metrics, out = _run(args, capsys)
    auto = {key: value for key, value, _ in AUTO_LINE.findall(out)}
    assert auto["data.batch_size"] == "10"  # 120 - 24 test = 96 training sequences
    assert auto["data.val_fraction"] == "0.0"
    assert "trainer.max_epochs" not in auto  # the user's value wins ...
    assert "Epoch [2/2]" in out and "Epoch [3/" not in out
    assert "Validation Loss" not in out  # no validation split
    saved = yaml.safe_load((in_tmp / "lightning_logs/version_0/config.yaml").read_text())
    assert saved["data"]["init_args"]["batch_size"] == 10
    assert saved["data"]["init_args"]["val_fraction"] == 0.0
    assert saved["trainer"]["max_epochs"] == 2
    assert saved["lr_scheduler"]["init_args"]["total_steps"] == 2  # ... and the schedule follows it
    assert saved["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert saved["optimizer"]["init_args"]["fused"] is True  # torch's fused step: a quarter of the time on the CPU
    assert saved["model"]["hidden_size"] == 64
    assert saved["model"]["conv_channels"] == [64, 128, 64]  # an FCN branch ...
    assert saved["model"]["rocket_features"] == 10_000  # ... and the random kernels
    assert saved["model"]["rocket_max_dilation"] == 4  # 39 // 8: the kernels span the longest sequence
    assert saved["model"]["label_smoothing"] == 0.1
    assert saved["model"]["downsample"] == 1  # 40 steps: no stride chosen, the model's default
    assert saved["threads"] == 1  # batches of 10: one CPU thread

    again, out = _run(["--config", "lightning_logs/version_0/config.yaml"], capsys)
    assert AUTO_LINE.search(out) is None  # every value comes from the file
    assert again["test/acc"] == metrics["test/acc"] and again["test/loss"] == pytest.approx(metrics["test/loss"])
    resaved = yaml.safe_load((in_tmp / "lightning_logs/version_1/config.yaml").read_text())
    for group in ("optimizer", "lr_scheduler"):  # the second run spells out the classes' other defaults
        assert resaved[group]["init_args"].items() >= saved[group]["init_args"].items()
        assert resaved.pop(group)["class_path"] == saved.pop(group)["class_path"]
    assert resaved == saved


def test_cli_user_values_win(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--data", "FileDataModule", "--data.train_file", WAVES, "--data.batch_size", "32",
        "--trainer.max_epochs", "1", "--data.val_fraction", "0.2", "--optimizer", "SGD", "--optimizer.lr", "0.05",
        "--model.hidden_size", "8",
    ]  # fmt: skip
    _, out = _run(args, capsys)
    auto = {key for key, _, _ in AUTO_LINE.findall(out)}
    assert auto.isdisjoint({"data.batch_size", "data.val_fraction", "optimizer", "model.hidden_size"})
    assert "checkpoint.monitor" not in auto and "Validation Loss" in out
    saved = yaml.safe_load((in_tmp / "lightning_logs/version_0/config.yaml").read_text())
    assert saved["data"]["init_args"]["batch_size"] == 32
    assert saved["optimizer"]["class_path"] == "torch.optim.SGD"
    assert saved["lr_scheduler"]["init_args"]["max_lr"] == 0.05
    assert saved["model"]["hidden_size"] == 8
    assert saved["threads"] is None  # batches of 32: torch's own thread count


def test_tutorial_run_has_no_auto_values(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _run(["--trainer.max_epochs", "1"], capsys)
    assert AUTO_LINE.search(out) is None
    assert re.search(r"^Epoch \[1/1\], Train Loss: \d\.\d{4}, Validation Loss: \d\.\d{4}$", out, re.M)
    saved = yaml.safe_load((in_tmp / "lightning_logs/version_0/config.yaml").read_text())
    assert saved["optimizer"]["class_path"] == "torch.optim.Adam" and saved["lr_scheduler"] is None
    assert saved["model"]["conv_channels"] is None and saved["model"]["hidden_size"] == 32
    assert saved["model"]["rocket_features"] == 0  # the tutorial's BiGRU


@pytest.mark.parametrize("value", ["-0.1", "1.0", "abc"])
def test_bad_val_fraction_is_one_line_error(in_tmp: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", "FileDataModule", "--data.train_file", WAVES, "--data.val_fraction", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "val_fraction" in err[0]
    assert not (in_tmp / "lightning_logs").exists()


def test_variable_length_file_facts(tmp_path: Path) -> None:
    from bigru_lightning.recipe import facts_of_files

    x = np.zeros((6, 30, 2), dtype=np.float32)
    np.savez(tmp_path / "d.npz", X=x, y=np.array([0, 1] * 3), lengths=np.array([5, 30, 12, 7, 9, 10]))
    facts = facts_of_files(str(tmp_path / "d.npz"), has_val_file=False)
    assert (facts.train_sequences, facts.max_length, facts.num_features, facts.num_classes) == (6, 30, 2, 2)


def test_val_fraction_zero_trains_on_everything_but_the_test_split(tmp_path: Path) -> None:
    from bigru_lightning.data import FileDataModule

    x = np.random.default_rng(0).standard_normal((40, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(40) % 2)
    dm = FileDataModule(str(tmp_path / "d.npz"), val_fraction=0.0, test_fraction=0.2)
    dm.setup("fit")
    assert dm.train_split is not None and dm.test_split is not None
    assert (len(dm.train_split), len(dm.test_split)) == (32, 8)
    assert not dm.has_validation and dm.val_dataloader() == []
