"""The app layer every command shares: options, the error boundary, checkpoint loading, atomic files, HParams."""

from __future__ import annotations

import ast
import gc
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, hparams_entry, script_env
from lightning.pytorch.loggers import TensorBoardLogger

from bigru_lightning.app import (
    OptionParser,
    atomic_output,
    check_output,
    imports_without_collection,
    load_checkpoint,
    run_command,
)
from bigru_lightning.callbacks import KEY_SETTINGS, write_hparams_entry
from bigru_lightning.cli import main as fit_main
from bigru_lightning.errors import UserInputError
from bigru_lightning.resilience import AtomicCheckpointIO

# -- options and the error boundary --------------------------------------------------------------------------------


def test_option_parser_mistakes_are_user_errors() -> None:
    parser = OptionParser(prog="x")
    parser.add_argument("--count", type=int, required=True)
    with pytest.raises(UserInputError, match="--count"):
        parser.parse_args([])
    with pytest.raises(UserInputError, match="invalid int value: 'many'"):
        parser.parse_args(["--count", "many"])
    with pytest.raises(UserInputError, match="unrecognized arguments: --bogus"):
        parser.parse_args(["--count", "1", "--bogus"])


def _fail(error: BaseException) -> object:
    raise error


def test_run_command_turns_user_errors_into_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BIGRU_DEBUG", raising=False)
    assert run_command(lambda: 7) == 7
    with pytest.raises(SystemExit) as stop:
        run_command(lambda: _fail(UserInputError("--size 0: must be\n   positive")))
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: --size 0: must be positive\n"
    # A user error behind another exception (its cause) is found and shown.
    try:
        raise UserInputError("--file x: missing")
    except UserInputError as inner:
        wrapped = RuntimeError("while loading")
        wrapped.__cause__ = inner
    with pytest.raises(SystemExit):
        run_command(lambda: _fail(wrapped))
    assert capsys.readouterr().err == "error: --file x: missing\n"


def test_run_command_extra_exit_codes_and_genuine_failures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BIGRU_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        run_command(lambda: _fail(OSError("disk full")), {OSError: 1})
    assert stop.value.code == 1 and capsys.readouterr().err == "error: disk full\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_command(lambda: 1 / 0)


def test_bigru_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIGRU_DEBUG", "1")
    with pytest.raises(UserInputError, match="--size"):
        run_command(lambda: _fail(UserInputError("--size 0")))
    monkeypatch.setenv("BIGRU_DEBUG", "0")
    with pytest.raises(SystemExit):
        run_command(lambda: _fail(UserInputError("--size 0")))


# -- checkpoints ---------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a file: proof that it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_load_checkpoint_explains_every_bad_file_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, good)
    assert load_checkpoint(good)["epoch"] == 3
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[:300])
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.ckpt")
    marker = tmp_path / "payload_ran"
    torch.save({"state_dict": {}, "extra": _Payload(marker)}, tmp_path / "evil.ckpt")
    (tmp_path / "pickle.ckpt").write_bytes(pickle.dumps({"a": 1}))
    expected = {
        "missing.ckpt": "no such file",
        ".": "not a file",
        "empty.ckpt": "the file is empty",
        "text.ckpt": "not a PyTorch checkpoint",
        "truncated.ckpt": "not a PyTorch checkpoint, or truncated",
        "plain.ckpt": "not a Lightning checkpoint (no state_dict)",
        "evil.ckpt": "refused: it holds pickled Python objects",
        "pickle.ckpt": "not a PyTorch checkpoint",
    }
    for name, needle in expected.items():
        path = tmp_path / name
        with pytest.raises(UserInputError) as caught:
            load_checkpoint(path, param="--weights")
        message = str(caught.value)
        assert message.startswith(f"--weights {path}: ") and needle in message, message
        assert "\n" not in message
    assert not marker.exists()  # the payload never ran


# -- atomic output files -------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_output_appears_whole_with_a_plain_file_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_output(target, overwrite=False) as temporary:
        assert temporary.parent == tmp_path and temporary != target
        temporary.write_text("complete\n")
        assert not target.exists()  # nothing under the real name until the block succeeds
    assert target.read_text() == "complete\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not the temporary file's private 0600
    assert _leftovers(tmp_path) == []


def test_atomic_output_keeps_the_old_file_on_failure_and_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old\n"
    exists = "already exists; choose another path or add --overwrite"
    with pytest.raises(UserInputError, match=exists), atomic_output(target, overwrite=False) as temporary:
        temporary.write_text("new\n")
    assert target.read_text() == "old\n"
    with atomic_output(target, overwrite=True) as temporary:
        temporary.write_text("new\n")
    assert target.read_text() == "new\n"
    assert _leftovers(tmp_path) == []


def test_check_output_refuses_what_would_be_clobbered(tmp_path: Path) -> None:
    (tmp_path / "mine.csv").write_text("x")
    cases = {
        tmp_path: "is a folder",
        tmp_path / "mine.csv": "already exists",
        tmp_path / "no" / "o.csv": "does not exist",
        Path(""): "give a file name",
    }
    for path, needle in cases.items():
        with pytest.raises(UserInputError, match=needle):
            check_output(path, overwrite=False)
    check_output(tmp_path / "mine.csv", overwrite=True)


def test_checkpoints_are_written_through_the_same_atomic_writer(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.arange(3)}}, target)
    assert torch.equal(load_checkpoint(target)["state_dict"]["w"], torch.arange(3))
    assert _leftovers(target.parent) == []


# -- the TensorBoard HParams entry ---------------------------------------------------------------------------------


def test_hparams_entry_is_written_into_the_runs_own_event_file(tmp_path: Path) -> None:
    """The one non-public API used (SummaryWriter._get_file_writer): fails here if torch changes it."""
    logger = TensorBoardLogger(tmp_path, name="", version=0, default_hp_metric=False)
    logger.log_metrics({"test/acc": 0.5}, step=3)
    logger.finalize("success")  # Lightning closes the writer after fitting; the entry is written after that
    write_hparams_entry(logger, {"optimizer": "Adam", "lr": 0.01}, {"test/acc": 0.5})
    columns, values = hparams_entry(Path(logger.log_dir))
    assert columns == ["optimizer", "lr"]
    assert values == {"optimizer": "Adam", "lr": 0.01}
    assert [p.name for p in Path(logger.log_dir).iterdir() if p.is_dir()] == []  # no sub-run (add_hparams makes one)


def test_hparams_entry_of_a_run_carries_the_settings_actually_used(in_tmp: Path) -> None:
    fit_main(
        [
            "--trainer.max_epochs=2",
            "--data.samples_per_class=20",
            "--data.batch_size=8",
            "--model.hidden_size=4",
            "--optimizer=SGD",
            "--optimizer.lr=0.05",
            "--lr_scheduler=StepLR",
            "--lr_scheduler.step_size=1",
            "--trainer.enable_model_summary=false",
        ]
    )
    columns, values = hparams_entry(in_tmp / "lightning_logs/version_0")
    assert columns[: len(KEY_SETTINGS)] == list(KEY_SETTINGS)
    assert values["optimizer"] == "SGD" and values["lr"] == pytest.approx(0.05)  # the initial lr, not the decayed one
    assert values["lr_scheduler"] == "StepLR"
    assert values["max_epochs"] == 2 and values["batch_size"] == 8
    assert values["model.hidden_size"] == 4 and values["data"] == "GaussianDataModule"
    assert "data.samples_per_class" in values


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_unless_the_user_says_otherwise(given: str | None, expected: str) -> None:
    """Importing the package before torch makes OpenMP's threads sleep between regions; a user's choice stays."""
    env = script_env()
    env.pop("OMP_WAIT_POLICY", None)
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import bigru_lightning, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


# -- start-up ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled_before", [True, False])
def test_imports_without_collection_pauses_then_freezes_and_restores(enabled_before: bool) -> None:
    """Nothing is collected inside the block; afterwards what exists is frozen and the collector is as it was."""
    was_enabled = gc.isenabled()
    frozen_before = gc.get_freeze_count()
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    (gc.enable if enabled_before else gc.disable)()
    gc.callbacks.append(count)
    try:
        with imports_without_collection():
            assert not gc.isenabled()
            cycles = []
            for _ in range(50_000):  # far past the collector's thresholds
                node: list[object] = []
                node.append(node)
                cycles.append(node)
        assert collections == []
        assert gc.isenabled() is enabled_before
        assert gc.get_freeze_count() >= frozen_before + len(cycles)
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()
        (gc.enable if was_enabled else gc.disable)()


def test_fit_script_imports_torch_and_lightning_without_a_full_collection() -> None:
    """scripts/fit.py's imports run no full collection and leave the modules' objects frozen, the collector on."""
    code = (
        "import gc, runpy, sys\n"
        "full = []\n"
        "def count(phase, info):\n"
        "    if phase == 'start' and info['generation'] == 2:\n"
        "        full.append(1)\n"
        "gc.callbacks.append(count)\n"
        "runpy.run_path(sys.argv[1], run_name='imported')\n"  # the script's imports, not its main
        "print(len(full), gc.get_freeze_count(), gc.isenabled(), 'lightning' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "scripts" / "fit.py")],
        env=script_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    full, frozen, enabled, lightning = done.stdout.split()
    assert lightning == "True" and enabled == "True"
    assert int(full) == 0  # without the pause: about 7 full collections while torch and Lightning import
    assert int(frozen) > 100_000


@pytest.mark.parametrize("script", sorted((REPO / "scripts").glob("*.py")), ids=lambda path: path.name)
def test_every_script_imports_its_command_with_the_collector_paused(script: Path) -> None:
    """Each script imports its ``main`` inside ``imports_without_collection()`` and nothing heavy before it."""
    tree = ast.parse(script.read_text())
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.With)
        and any(
            isinstance(item.context_expr, ast.Call)
            and getattr(item.context_expr.func, "id", None) == "imports_without_collection"
            for item in node.items
        )
    ]
    assert len(blocks) == 1, f"{script.name}: no `with imports_without_collection():` around its imports"
    imported = [alias.name for node in blocks[0].body if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert "main" in imported
    before = tree.body[: tree.body.index(blocks[0])]
    before = [node for node in before if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(node, ast.ImportFrom) and node.module == "bigru_lightning.app" for node in before)
