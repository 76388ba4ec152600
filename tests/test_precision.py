"""Mixed precision on CPU: bf16-mixed really runs under bf16 autocast; an unknown precision is a one-line error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from bigru_lightning.cli import main
from bigru_lightning.module import BiGRUClassifier

TINY = ["--data.samples_per_class", "40", "--model.hidden_size", "8", "--trainer.max_epochs", "2"]


def _record_forward_dtypes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, torch.dtype, torch.dtype]]:
    """Record, for every forward of the classifier: autocast on (CPU), its dtype, the logits' dtype."""
    seen: list[tuple[bool, torch.dtype, torch.dtype]] = []
    original = BiGRUClassifier.forward

    def recording_forward(self: BiGRUClassifier, *args: Any, **kwargs: Any) -> torch.Tensor:
        logits = original(self, *args, **kwargs)
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), logits.dtype))
        return logits

    monkeypatch.setattr(BiGRUClassifier, "forward", recording_forward)
    return seen


def test_bf16_mixed_on_cpu_runs_under_bf16_autocast(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_forward_dtypes(monkeypatch)
    metrics = main(["--trainer.accelerator", "cpu", "--precision", "bf16-mixed", *TINY])
    assert "Test Accuracy:" in capsys.readouterr().out
    assert math.isfinite(metrics["test/loss"])
    # train (2), sanity check, val (2) and test forwards: every one under bf16 autocast, logits in bf16
    assert len(seen) >= 5
    assert all(entry == (True, torch.bfloat16, torch.bfloat16) for entry in seen), set(seen)
    # the weights stay float32 (mixed, not true bf16): the checkpoint holds float32 parameters
    state = torch.load(in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert {tensor.dtype for tensor in state.values() if tensor.is_floating_point()} == {torch.float32}


def test_default_precision_runs_without_autocast(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The counterpart: the default run sees no autocast, so the bf16 test above is not vacuous."""
    seen = _record_forward_dtypes(monkeypatch)
    main(["--trainer.accelerator", "cpu", *TINY])
    assert seen and all(entry[0] is False and entry[2] == torch.float32 for entry in seen), set(seen)


def test_unknown_precision_is_a_one_line_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--precision", "bf17-mixed", *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "precision" in err and "\n" not in err
    assert not (in_tmp / "lightning_logs").exists()
