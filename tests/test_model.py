"""The plain nn.Module: shapes, pooling semantics, variable lengths."""

from __future__ import annotations

import pytest
import torch

from bigru_lightning.model import POOLINGS, BiGRU


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
    out, h_n = model.gru(x)
    return model._pool_full(out, h_n)


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


def test_final_state_is_last_layer_of_h_n() -> None:
    model = BiGRU(hidden_size=5, num_layers=3, pooling="final_state")
    x = torch.randn(2, 6, 1)
    out, h_n = model.gru(x)
    summary = model._pool_full(out, h_n)
    assert torch.equal(summary[:, :5], h_n[-2])
    assert torch.equal(summary[:, 5:], h_n[-1])
    assert torch.allclose(summary[:, :5], out[:, -1, :5])  # forward final state = last output


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_batch_matches_each_sequence_alone(pooling: str) -> None:
    torch.manual_seed(1)
    model = BiGRU(input_size=2, hidden_size=7, num_layers=2, num_classes=3, pooling=pooling).eval()
    lengths = torch.tensor([9, 3, 6, 1])
    x = torch.randn(4, 9, 2)
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3  # garbage in the padding must not leak into the result
    batched = model(x, lengths)
    for i, n in enumerate(lengths):
        alone = model(x[i : i + 1, :n])
        assert torch.allclose(batched[i], alone[0], atol=1e-5), (pooling, i)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_layers": -1}, "num_layers"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"pooling": "median"}, "pooling"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BiGRU(**kwargs)  # type: ignore[arg-type]
