"""The plain nn.Module: shapes, pooling semantics, padding never reaching the output, options, old checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import REPO, script_env
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bigru_lightning.model import POOLINGS, BiGRU, recurrent
from bigru_lightning.model.conv import ConvBranch
from bigru_lightning.model.downsample import TimeDownsample
from bigru_lightning.model.gru_scan import GRUScan, scan_applies
from bigru_lightning.model.pooling import POOLING_CLASSES
from bigru_lightning.model.recurrent import StackedGRU
from bigru_lightning.model.steps import valid_steps

# Every option alone and in combination (small sizes: the property does not depend on them).
OPTIONS: list[dict[str, Any]] = [
    *({"pooling": pooling} for pooling in POOLINGS),
    {"conv_channels": [5, 7, 4]},
    {"conv_channels": [6], "conv_kernels": [4]},
    {"downsample": 3},
    {"downsample": 2, "pooling": "attention"},
    {"conv_channels": [4, 6], "conv_kernels": [4, 3], "downsample": 4, "pooling": "attention", "num_layers": 2},
    {"conv_channels": [5, 7, 4], "downsample": 3, "pooling": "final_state", "num_layers": 2, "bidirectional": False},
    {"rocket_features": 168, "rocket_max_dilation": 2},
    {"rocket_features": 252, "conv_channels": [4], "conv_kernels": [3], "downsample": 2, "pooling": "attention"},
]
OPTION_IDS = [",".join(f"{k}={v}" for k, v in options.items()) for options in OPTIONS]


def _net(seed: int = 0, **options: Any) -> BiGRU:
    torch.manual_seed(seed)
    settings: dict[str, Any] = {"input_size": 2, "hidden_size": 5, "num_classes": 3} | options
    model = BiGRU(**settings)
    if model.rocket is not None:  # biases from data, as training sets them
        model.rocket.fit(torch.randn(10, 14, 2, generator=torch.Generator().manual_seed(seed + 7)))
    return model


def _padded_batch(garbage: float, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean x, x with ``garbage`` in the padding, lengths), lengths covering 1 and the full time."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([14, 1, 7, 4, 11, 2])
    x = torch.randn(len(lengths), 14, 2, generator=generator)
    dirty = x.clone()
    for row, length in enumerate(lengths.tolist()):
        x[row, length:] = 0.0
        dirty[row, length:] = garbage
    return x, dirty, lengths


def test_pooling_names_match_their_classes() -> None:
    assert set(POOLINGS) == set(POOLING_CLASSES)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_output_shape_for_each_pooling(pooling: str, bidirectional: bool) -> None:
    model = BiGRU(
        input_size=3, hidden_size=8, num_layers=2, num_classes=4, bidirectional=bidirectional, pooling=pooling
    )
    logits = model(torch.randn(5, 7, 3))
    assert logits.shape == (5, 4)
    assert logits.dtype == torch.float32


def _summary(model: BiGRU, x: torch.Tensor) -> torch.Tensor:
    """The pooled vector before the head."""
    out = model.rnn(x)
    return model.pool(out, torch.full((x.shape[0],), x.shape[1]))


def test_final_state_backward_half_sees_first_step() -> None:
    torch.manual_seed(0)
    model = BiGRU(hidden_size=6, pooling="final_state")
    x = torch.randn(4, 10, 1)
    changed = x.clone()
    changed[:, 0] += 3.0
    before, after = _summary(model, x), _summary(model, changed)
    # Forward direction's final state has seen every step too; the backward one ends at step 0.
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_last_step_backward_half_ignores_first_step() -> None:
    torch.manual_seed(0)
    model = BiGRU(hidden_size=6, pooling="last_step")
    x = torch.randn(4, 10, 1)
    changed = x.clone()
    changed[:, 0] += 3.0
    before, after = _summary(model, x), _summary(model, changed)
    assert torch.equal(before[:, 6:], after[:, 6:])  # backward half at t=-1 saw only the last element
    assert not torch.allclose(before[:, :6], after[:, :6])  # forward half saw everything


def _packed_reference(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the earlier implementation computed: ``nn.GRU`` on a ``pack_padded_sequence``."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = gru(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], h_n


def _old_layout_state(num_layers: int, bidirectional: bool, seed: int = 3) -> tuple[nn.GRU, dict[str, torch.Tensor]]:
    """An ``nn.GRU`` + head and the state dict the earlier ``BiGRU`` (``self.gru``, ``self.head``) saved."""
    torch.manual_seed(seed)
    gru = nn.GRU(2, 5, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
    head = nn.Linear((2 if bidirectional else 1) * 5, 3)
    state = {f"gru.{name}": value for name, value in gru.state_dict().items()}
    state |= {f"head.{name}": value for name, value in head.state_dict().items()}
    return gru, state


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_old_layout_loads_and_computes_what_packing_computed(num_layers: int, bidirectional: bool) -> None:
    gru, state = _old_layout_state(num_layers, bidirectional)
    model = _net(num_layers=num_layers, bidirectional=bidirectional, pooling="final_state").eval()
    model.load_state_dict(state)  # strict: every old key mapped, every new key filled
    _, dirty, lengths = _padded_batch(1e3)
    with torch.no_grad():
        expected_out, h_n = _packed_reference(gru, dirty, lengths)
        out = model.rnn(dirty, lengths)
        directions = 2 if bidirectional else 1
        final = h_n[-directions:].transpose(0, 1).reshape(len(lengths), -1)
        torch.testing.assert_close(model.pool(out, lengths), final, rtol=0, atol=1e-6)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[row, :length], expected_out[row, :length], rtol=0, atol=1e-6)


def test_old_layout_loads_into_the_lightning_module() -> None:
    from bigru_lightning.module import BiGRUClassifier

    _, state = _old_layout_state(2, True)
    old = {f"net.{key}": value for key, value in state.items()}
    fresh = BiGRUClassifier(input_size=2, num_classes=3, hidden_size=5, num_layers=2)
    old |= {key: value for key, value in fresh.state_dict().items() if not key.startswith("net.")}
    fresh.load_state_dict(old)
    loaded = fresh.net.rnn.layers[1].backward_gru.weight_hh_l0
    assert torch.equal(loaded, state["gru.weight_hh_l1_reverse"])


# Written by the code before this package (commit 441fa06, one nn.GRU + pack_padded_sequence):
#   scripts/fit.py --trainer.max_epochs 1 --model.hidden_size 4 --model.num_layers 2 --model.pooling mean
#     --data.num_features 2 --data.samples_per_class 20
# with that code's probabilities for a padded batch (x, lengths) stored beside it.
OLD_CHECKPOINT = REPO / "tests" / "data" / "nn_gru_layout.ckpt"
OLD_EXPECTED = REPO / "tests" / "data" / "nn_gru_layout_expected.npz"


def test_checkpoint_of_the_previous_layout_predicts_as_before() -> None:
    from bigru_lightning.module import BiGRUClassifier

    state = torch.load(OLD_CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    assert "net.gru.weight_ih_l1_reverse" in state  # really the old layout
    model = BiGRUClassifier.load_from_checkpoint(OLD_CHECKPOINT, map_location="cpu", weights_only=True).eval()
    expected = np.load(OLD_EXPECTED)
    with torch.no_grad():
        got = model(torch.from_numpy(expected["x"]), torch.from_numpy(expected["lengths"])).softmax(dim=-1)
    np.testing.assert_allclose(got.numpy(), expected["probabilities"], rtol=0, atol=1e-6)


def test_fit_resumes_from_a_checkpoint_of_the_previous_layout(in_tmp: Path) -> None:
    from bigru_lightning.cli import main as fit_main

    args = ["--model.hidden_size", "4", "--model.num_layers", "2", "--model.pooling", "mean"]
    args += ["--data.num_features", "2", "--data.samples_per_class", "20", "--trainer.max_epochs", "2"]
    metrics = fit_main([*args, "--trainer.enable_model_summary", "false", "--ckpt_path", str(OLD_CHECKPOINT)])
    assert 0.0 <= metrics["test/acc"] <= 1.0
    resumed = torch.load(in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and "net.rnn.layers.1.backward_gru.weight_ih_l0" in resumed["state_dict"]


def test_default_model_draws_the_earlier_initial_weights() -> None:
    """Same seed, same initial weights as the nn.GRU + Linear of earlier versions (seeded runs unchanged)."""
    torch.manual_seed(42)
    gru = nn.GRU(1, 32, batch_first=True, bidirectional=True)
    nn.Dropout(0.0)
    head = nn.Linear(64, 2)
    torch.manual_seed(42)
    model = BiGRU()
    assert torch.equal(model.rnn.layers[0].backward_gru.weight_ih_l0, gru.weight_ih_l0_reverse)
    assert torch.equal(model.head.weight, head.weight)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("garbage", [1e3, float("nan")])
def test_padding_never_reaches_the_output(options: dict[str, Any], garbage: float) -> None:
    model = _net(**options).eval()
    _, dirty, lengths = _padded_batch(garbage)
    with torch.no_grad():
        batched = model(dirty, lengths)
        alone = torch.cat([model(dirty[row : row + 1, :n]) for row, n in enumerate(lengths.tolist())])
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_training_mode_ignores_padding_content_and_amount(options: dict[str, Any]) -> None:
    """In training (batch-norm statistics from the batch) padding values and extra padded steps change nothing."""
    model = _net(**options).train()
    clean, dirty, lengths = _padded_batch(1e3)
    longer = torch.cat([dirty, torch.full((dirty.shape[0], 5, 2), -7.0)], dim=1)
    outputs = []
    for x in (clean, dirty, longer):
        torch.manual_seed(0)
        outputs.append(model(x, lengths))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_gradients_reach_every_parameter_and_ignore_padding(options: dict[str, Any]) -> None:
    clean, dirty, lengths = _padded_batch(1e3)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    gradients = []
    for x in (clean, dirty):
        model = _net(**options).train()
        nn.functional.cross_entropy(model(x, lengths), target).backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    # last_step's backward half is one step from h0 = 0, so its recurrent weights cannot matter.
    unused = "rnn.layers.0.backward_gru.weight_hh_l0" if options.get("pooling") == "last_step" else None
    for name, gradient in gradients[0].items():
        assert gradient is not None and torch.isfinite(gradient).all(), name
        assert (gradient.abs().sum() > 0) == (name != unused), name
        torch.testing.assert_close(gradients[1][name], gradient, rtol=0, atol=1e-6)


def test_full_length_fast_path_equals_the_masked_path() -> None:
    for options in OPTIONS:
        model = _net(**options).eval()
        x = torch.randn(4, 9, 2)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x, torch.full((4,), 9)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("lengths", [None, [8, 8, 8, 8, 8], [8, 3, 5, 1, 8]], ids=["none", "full", "variable"])
def test_final_state_reads_the_grus_states(num_layers: int, bidirectional: bool, lengths: list[int] | None) -> None:
    """final_state pooling takes each direction's state where it finished: the logits and gradients of the
    pooling over the GRUs' outputs (the path other poolings take), the pooling itself not called."""
    torch.manual_seed(0)
    model = BiGRU(input_size=2, hidden_size=6, num_classes=3, num_layers=num_layers, bidirectional=bidirectional)
    pool_calls: list[int] = []
    model.pool.register_forward_hook(lambda *_: pool_calls.append(1))
    x, target = torch.randn(5, 8, 2), torch.tensor([0, 1, 2, 1, 0])
    step_counts = None if lengths is None else torch.tensor(lengths)
    results = []
    for reads_states in (True, False):
        model.pool_reads_final_states = reads_states
        model.zero_grad()
        logits = model(x, step_counts)
        nn.functional.cross_entropy(logits, target).backward()
        results.append(
            (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    assert len(pool_calls) == 1  # only the run over the outputs went through the pooling
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    assert results[0][1].keys() == results[1][1].keys() == {n for n, _ in model.named_parameters()}
    for name, gradient in results[0][1].items():
        torch.testing.assert_close(gradient, results[1][1][name], rtol=1e-5, atol=1e-7)


def test_downsample_averages_windows_of_valid_steps() -> None:
    x = torch.arange(1.0, 8.0).reshape(1, 7, 1).repeat(2, 1, 1)  # 1..7
    x[1, 5:] = 100.0  # second row: 5 valid steps, then padding
    short, lengths = TimeDownsample(3)(x, torch.tensor([7, 5]))
    assert lengths is not None and lengths.tolist() == [3, 2]  # ceil(7/3), ceil(5/3)
    assert short[0, :, 0].tolist() == [2.0, 5.0, 7.0]  # (1+2+3)/3, (4+5+6)/3, 7/1
    assert short[1, :2, 0].tolist() == [2.0, 4.5]  # (4+5)/2: the padding is not counted
    unpadded, none = TimeDownsample(3)(x[:1], None)
    assert none is None and torch.equal(unpadded, short[:1])


def test_conv_branch_batch_norm_counts_valid_steps_only() -> None:
    torch.manual_seed(0)
    branch = ConvBranch(2, [3], [1]).train()
    _, dirty, lengths = _padded_batch(1e3)
    branch(dirty, lengths)
    conv = branch.blocks[0].conv
    valid = torch.cat([dirty[row, :n] for row, n in enumerate(lengths.tolist())])  # (steps, 2)
    with torch.no_grad():
        activations = conv(valid.T.unsqueeze(0))[0]  # kernel 1: step by step
    expected_mean = 0.1 * activations.mean(dim=1)  # momentum 0.1 from 0
    expected_var = 0.9 + 0.1 * activations.var(dim=1, unbiased=True)
    norm = branch.blocks[0].norm
    assert norm.running_mean is not None and norm.running_var is not None
    torch.testing.assert_close(norm.running_mean, expected_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(norm.running_var, expected_var, rtol=1e-5, atol=1e-5)


def test_conv_branch_training_output_and_gradients_are_batch_norm_over_valid_steps() -> None:
    """In training the branch's output and its gradients are those of batch norm over the valid steps alone."""
    torch.manual_seed(0)
    branch = ConvBranch(2, [3], [1]).train()
    _, dirty, lengths = _padded_batch(1e3)
    weights = torch.randn(dirty.shape[0], 3)
    block = branch.blocks[0]
    parameters = [block.conv.weight, block.conv.bias, block.norm.weight, block.norm.bias]
    out = branch(dirty, lengths)
    gradients = torch.autograd.grad((out * weights).sum(), parameters)

    valid = torch.cat([dirty[row, :n] for row, n in enumerate(lengths.tolist())])  # (steps, 2)
    activations = block.conv(valid.T.unsqueeze(0))[0]  # kernel 1: step by step, (3, steps)
    mean = activations.mean(dim=1, keepdim=True)
    variance = activations.var(dim=1, unbiased=False, keepdim=True)
    normalised = (activations - mean) / torch.sqrt(variance + block.norm.eps)
    steps = nn.functional.relu(normalised * block.norm.weight[:, None] + block.norm.bias[:, None])
    expected = torch.stack([part.mean(dim=1) for part in steps.split(lengths.tolist(), dim=1)])
    expected_gradients = torch.autograd.grad((expected * weights).sum(), parameters)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    for ours, reference in zip(gradients, expected_gradients, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_conv_branch_widens_the_head() -> None:
    model = _net(conv_channels=[8, 16, 12])
    assert model.head.in_features == 10 + 12
    assert [block.conv.kernel_size[0] for block in model.conv.blocks] == [8, 5, 3]  # type: ignore[union-attr]


def test_attention_of_identical_steps_is_that_step() -> None:
    model = _net(pooling="attention")
    out = torch.randn(3, 1, 10).expand(3, 6, 10)
    pooled = model.pool(out, torch.tensor([6, 2, 1]))
    torch.testing.assert_close(pooled, out[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_layers": -1}, "num_layers"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"pooling": "median"}, "pooling"),
        ({"downsample": 0}, "downsample"),
        ({"conv_channels": []}, "conv_channels"),
        ({"conv_channels": [8, -1, 3]}, "conv_channels"),
        ({"conv_channels": [8, 4]}, "conv_kernels"),
        ({"conv_channels": [8], "conv_kernels": [0]}, "conv_kernels"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BiGRU(**kwargs)  # type: ignore[arg-type]


# -- the options through scripts/fit.py: bad values are one-line errors (exit 2), nothing written ------------------

BAD_OPTIONS = [
    (["--model.pooling", "median"], "model.pooling"),
    (["--model.conv_channels", "[]"], "model.conv_channels"),
    (["--model.conv_channels", "[64, 0]"], "model.conv_channels"),
    (["--model.conv_channels", "[64, 32]"], "model.conv_kernels"),  # three kernels by default
    (["--model.conv_channels", "[8]", "--model.conv_kernels", "[-3]"], "model.conv_kernels"),
    (["--model.downsample", "0"], "model.downsample"),
    (["--model.downsample", "two"], "model.downsample"),
    (["--model.label_smoothing", "1.0"], "model.label_smoothing"),
    (["--model.label_smoothing", "-0.1"], "model.label_smoothing"),
    (["--model.rocket_features", "50"], "model.rocket_features"),
    (["--model.rocket_features", "-84"], "model.rocket_features"),
    (["--model.rocket_features", "many"], "model.rocket_features"),
    (["--model.rocket_features", "168", "--model.rocket_max_dilation", "0"], "model.rocket_max_dilation"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_OPTIONS, ids=[" ".join(args) for args, _ in BAD_OPTIONS])
def test_fit_refuses_bad_model_options(
    args: list[str], expected: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bigru_lightning.cli import main as fit_main

    with pytest.raises(SystemExit) as stop:
        fit_main(["--trainer.max_epochs", "1", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert list(in_tmp.iterdir()) == []  # nothing written


def test_fit_script_refuses_a_bad_option_as_a_process(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "scripts" / "fit.py"), "--model.conv_kernels", "[8, 5]"]
    command += ["--model.conv_channels", "[8, 8, 8]"]
    result = subprocess.run(command, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]  # after Lightning's "Seed set to 42"
    assert last == "error: --model.conv_kernels: must give one kernel per entry of conv_channels (3), got [8, 5]"
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def _stacked_gru_pass(
    model: StackedGRU, x: torch.Tensor, lengths: torch.Tensor | None, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Outputs (valid steps only), final states and the gradients of every parameter and of ``x``."""
    valid = torch.ones(x.shape[:2], dtype=torch.bool) if lengths is None else valid_steps(lengths, x.shape[1])
    outputs = model(x, lengths) * valid.unsqueeze(2)
    finals = model.final_states(x, lengths)
    loss = (outputs * weights).sum() + finals.square().sum()
    return outputs.detach(), finals.detach(), list(torch.autograd.grad(loss, [x, *model.parameters()]))


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("variable", [False, True])
def test_cpu_training_scan_computes_what_nn_gru_computes(
    num_layers: int, bidirectional: bool, variable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-differentiated scan: the same outputs, final states and gradients as nn.GRU (float64)."""
    torch.manual_seed(3)
    model = StackedGRU(3, 7, num_layers, bidirectional, 0.0).double()
    x = torch.randn(5, 11, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([11, 3, 7, 1, 11]) if variable else None
    weights = torch.randn(5, 11, model.output_size, dtype=torch.float64)
    calls: list[int] = []
    original = GRUScan.apply
    monkeypatch.setattr(GRUScan, "apply", lambda *args: calls.append(1) or original(*args))
    scanned = _stacked_gru_pass(model, x, lengths, weights)
    assert len(calls) == 2 * num_layers  # forward and final_states, every layer through the scan
    monkeypatch.setattr(recurrent, "scan_applies", lambda *_: False)
    native = _stacked_gru_pass(model, x, lengths, weights)
    assert len(calls) == 2 * num_layers  # ... and nn.GRU alone here
    torch.testing.assert_close(scanned[0], native[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(scanned[1], native[1], rtol=0, atol=1e-12)
    for ours, theirs in zip(scanned[2], native[2], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-11)


def test_scan_is_for_cpu_training_only() -> None:
    """No gradient, frozen weights, autocast or tracing: nn.GRU runs (inference and export are unchanged)."""
    gru = nn.GRU(2, 4, batch_first=True)
    x = torch.randn(3, 5, 2)
    assert scan_applies(x, gru.weight_hh_l0)
    with torch.no_grad():
        assert not scan_applies(x, gru.weight_hh_l0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not scan_applies(x, gru.weight_hh_l0)
    assert not scan_applies(x.half(), gru.weight_hh_l0)
    gru.requires_grad_(False)
    assert not scan_applies(x, gru.weight_hh_l0)


def test_recipe_network_trains_the_same_through_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's network (FCN, random kernels, stride) in float32: logits and gradients as with nn.GRU."""
    net = _net(conv_channels=[4, 6], conv_kernels=[4, 3], downsample=2, rocket_features=168, rocket_max_dilation=2)
    x, _, lengths = _padded_batch(0.0)
    target = torch.tensor([0, 1, 2, 1, 0, 2])
    results = []
    for scan in (True, False):
        if not scan:
            monkeypatch.setattr(recurrent, "scan_applies", lambda *_: False)
        for batch_lengths in (None, lengths):
            net.zero_grad()
            logits = net(x, batch_lengths)
            nn.functional.cross_entropy(logits, target).backward()
            results.append((logits.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    for ours, theirs in zip(results[:2], results[2:], strict=True):
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-6)
        for mine, reference in zip(ours[1], theirs[1], strict=True):
            torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)
