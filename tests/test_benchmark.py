"""The benchmarks at tiny sizes: same work checked, interleaved rounds summarised honestly (no timing asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.compare_processes import compare, run_once
from benchmarks.rounds import MIN_ROUNDS, rotated, summarise
from benchmarks.throughput import (
    BenchConfig,
    RunRecord,
    available_model_options,
    main,
    model_rounds,
    reference_adam,
    same_work_problems,
)

TINY = ["--num_samples", "400", "--batch_size", "64", "--hidden_size", "4", "--epochs", "2", "--rounds", "2"]


def test_benchmark_json_reports_medians_and_the_same_work(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--json", *TINY, "--model_samples", "0"])
    result = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON object
    for key in (
        "lightning_vs_plain",
        "lightning_vs_dataloader",
        "lightning_vs_bare",
        "bare_vs_plain",
        "loader_vs_dataloader",
    ):
        summary = result[key]
        assert summary["rounds"] == 2
        assert summary["low"] <= summary["median"] <= summary["high"]
        assert summary["median"] > 0
        assert summary["trusted"] is False  # 2 rounds are fewer than MIN_ROUNDS
    work = result["work"]
    assert set(work) == {"plain", "lightning", "lightning_dataloader", "lightning_bare"}
    for record in work.values():  # 320 training sequences (80% of 400), batch 64: 5 steps per epoch
        assert record["train_samples"] == 2 * 320
        assert record["steps"] == 2 * 5
        assert record["val_samples"] == 80
        assert len(record["train_losses"]) == len(record["val_losses"]) == 2
    # The plain loop sees the batcher's batches in the batcher's order: its losses match the Trainer's.
    for name in ("lightning", "lightning_bare"):
        assert work["plain"]["train_losses"] == pytest.approx(work[name]["train_losses"], rel=1e-3)
        assert work["plain"]["val_losses"] == pytest.approx(work[name]["val_losses"], rel=1e-3)
    assert list(in_tmp.iterdir()) == []  # the Trainer's logs went to a temporary folder


def test_benchmark_report_says_when_not_to_trust(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([*TINY, "--model_samples", "0"])
    report = capsys.readouterr().out
    assert f"fewer than {MIN_ROUNDS} rounds: do not trust the median" in report
    assert "lightning_vs_plain" in report and "same work:" in report


def test_model_option_rows_cover_what_the_model_takes(in_tmp: Path) -> None:
    options, skipped = available_model_options()
    assert "BiGRU final_state (default)" in options and "pooling mean" in options
    assert set(options).isdisjoint(skipped)
    cfg = BenchConfig(
        hidden_size=4, rounds=1, model_samples=600, models=["BiGRU final_state (default)", "pooling mean"]
    )
    rounds, _ = model_rounds(cfg)
    assert len(rounds) == 1 and set(rounds[0]) == {"BiGRU final_state (default)", "pooling mean"}
    assert all(value > 0 for value in rounds[0].values())


def _record(steps: int = 10, loss: float = 0.5) -> RunRecord:
    return RunRecord(1.0, 1.0, 640, steps, 80, [0.6, loss], [0.5, loss])


def test_same_work_check_catches_other_steps_and_losses() -> None:
    assert same_work_problems({"plain": _record(), "lightning": _record(loss=0.2)}) == []
    problems = same_work_problems({"plain": _record(), "lightning": _record(steps=9)})
    assert problems == ["lightning steps 9 != plain 10"]
    problems = same_work_problems({"plain": _record(), "lightning": _record(loss=0.01)})
    assert len(problems) == 2 and "train_losses[1]" in problems[0] and "val_losses[1]" in problems[1]
    assert same_work_problems({"plain": _record(), "lightning": _record(loss=float("nan"))})
    # Both near zero (the task solved): other shuffles give other tiny losses, not other work.
    assert same_work_problems({"plain": _record(loss=2.2e-4), "lightning": _record(loss=1.3e-5)}) == []
    assert len(same_work_problems({"plain": _record(loss=0.05), "lightning": _record(loss=1e-5)})) == 2


def test_summary_median_range_and_trust() -> None:
    steady = summarise([1.00, 1.02, 0.99, 1.01, 1.03])
    assert (steady.median, steady.low, steady.high, steady.rounds) == (1.01, 0.99, 1.03, 5)
    assert steady.trusted and "too wide" not in steady.describe()
    wide = summarise([0.8, 1.0, 1.1, 1.0, 1.2])
    assert not wide.trusted and "too wide to trust the median" in wide.describe()
    few = summarise([1.0, 1.0])
    assert not few.trusted and "fewer than 5 rounds" in few.describe()
    with pytest.raises(ValueError):
        summarise([])


def test_rotation_puts_each_contestant_in_each_position() -> None:
    names = ["a", "b", "c"]
    orders = [rotated(names, index) for index in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for position in range(3):
        assert {order[position] for order in orders} == set(names)


def test_process_comparison_measures_each_child_peak_memory() -> None:
    small = f"{sys.executable} -c pass"
    large = f"{sys.executable} -c 'b = bytearray(300 * 2**20); b[::4096] = bytes(len(b[::4096]))'"
    assert run_once(large).peak_mib > 250 > run_once(small).peak_mib
    result = compare(small, large, rounds=2, log=lambda _line: None)
    assert result["b_over_a_peak_mib"]["median"] > 2
    assert result["a_wall_s"]["rounds"] == 2


def test_process_comparison_reports_a_failing_command() -> None:
    with pytest.raises(RuntimeError, match="exited with 3"):
        run_once(f"{sys.executable} -c 'raise SystemExit(3)'")


def test_benchmark_refuses_a_missing_gpu_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        main(["--accelerator", "gpu", *TINY])
    assert exit_info.value.code == 2
    assert "--accelerator gpu" in capsys.readouterr().err


def test_spy_breakdown_puts_each_sample_in_its_first_phase() -> None:
    from benchmarks.spy_breakdown import breakdown

    lines = [
        "<module> (fit.py:3);_find_and_load (<frozen importlib._bootstrap>:1176) 7",
        "run (cli.py:1);training_step (module.py:9);_find_and_load (<frozen importlib._bootstrap>:1) 2",
        "fit (lightning/pytorch/trainer/trainer.py:5);step (torch/optim/adam.py:1);training_step (module.py:9) 3",
        "fit (lightning/pytorch/trainer/trainer.py:5);step (torch/optim/adam.py:1);_single_tensor_adam (a.py:2) 4",
        "bayes_accuracy (gaussian_datamodule.py:1) 1",
        "on_test_end (bigru_lightning/figures/callback.py:40);confusion (bigru_lightning/figures/drawing.py:9) 2",
        "something (else.py:1) 5",
        "_bootstrap (threading.py:1002);_AsyncWriterThread.run (tensorboard/summary/writer/event_file_writer.py:1) 6",
        "validation_step (module.py:1);cross_entropy (torch/nn/functional.py:3) 1",
        # the plain script: its evaluation calls the same forward as its training
        "main (benchmarks/tutorial_plain.py:84);evaluate (benchmarks/tutorial_plain.py:43);"
        "BiGRU.forward (benchmarks/tutorial_plain.py:28) 4",
        "main (benchmarks/tutorial_plain.py:74);BiGRU.forward (benchmarks/tutorial_plain.py:28) 5",
        "not a sample line",
    ]
    counts = breakdown(lines)
    assert counts == {
        "imports": 9,  # a lazy import inside a step is still import cost
        "training: forward, loss, metrics": 3 + 5,
        "validation steps": 1,
        "validation and test (plain script)": 4,
        "training: optimizer step": 4,
        "Bayes oracle": 1,
        "figures (draw + write)": 2,
        "other": 5,
        "background threads (not in the shares)": 6,  # TensorBoard's writer thread: not the run's time
    }


def test_spy_report_puts_profiles_side_by_side_in_seconds() -> None:
    from collections import Counter

    from benchmarks.spy_breakdown import BACKGROUND, report

    fit = Counter({"imports": 150, "training: backward": 50, BACKGROUND: 999})
    plain = Counter({"imports": 100, "training: backward": 100})
    lines = report({"fit.txt": fit, "plain.txt": plain}, rate=100).splitlines()
    assert lines[1].split() == ["imports", "75.0%", "1.50", "s", "50.0%", "1.00", "s"]  # background left out
    assert lines[3].split()[-6:] == ["100.0%", "2.00", "s", "100.0%", "2.00", "s"]
    assert lines[4] == f"{BACKGROUND}: 999 samples, 0 samples"


def test_step_profiler_reports_time_and_host_syncs_per_step(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.profile_steps import main as profile_main

    profile_main(["--samples_per_class", "200", "--batch_size", "16", "--warmup", "2", "--steps", "3", "--rows", "5"])
    out = capsys.readouterr().out
    assert "self CPU time per step:" in out and "over 3 steps" in out
    # The GRU's math is what a step spends its time on (on the CPU: the scan's batched products).
    assert any(op in out for op in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"))
    assert list(in_tmp.iterdir()) == []


def test_reference_adam_is_the_tutorials_or_the_projects_fused_one() -> None:
    parameters = [torch.nn.Parameter(torch.zeros(3))]
    tutorial = reference_adam(parameters, BenchConfig())
    fused = reference_adam(parameters, BenchConfig(reference_adam="fused"))
    assert tutorial.defaults["lr"] == fused.defaults["lr"] == 0.01
    assert not tutorial.defaults["fused"] and fused.defaults["fused"]


def test_scoring_cost_times_both_ways_of_scoring_the_test_pass(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.scoring_cost import main as scoring_main

    result = scoring_main(["--classes", "3", "--batches", "20", "--batch_size", "16", "--rounds", "2"])
    assert result["per_batch"].rounds == result["at_end"].rounds == result["ratio"].rounds == 2
    assert result["per_batch"].median > 0 and result["at_end"].median > 0
    assert "at_end / per_batch" in capsys.readouterr().out


def test_step_threads_times_every_contestant(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.step_threads import main as step_threads

    threads = torch.get_num_threads()
    step_threads(["--shapes", "UnitTest", "--rounds", "1", "--repeats", "1"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| UnitTest"))
    cells = row.strip("|").split("|")[1:]
    assert len(cells) == 3 and all(float(cell.split()[0]) > 0 for cell in cells)
    assert torch.get_num_threads() == threads  # the caller's thread count again
