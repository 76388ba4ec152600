"""The random-kernel (MiniRocket) branch: its kernels and dilations, its fit, and its life in a training run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import script_env

from bigru_lightning.model import BiGRU
from bigru_lightning.model.rocket import (
    GAIN,
    MOMENT_COLUMNS,
    NUM_KERNELS,
    RandomKernelBranch,
    _column_moments,
    dilations_and_counts,
    max_dilation_for,
)


def _branch(input_size: int = 1, features: int = 840, length: int = 65, seed: int = 0) -> RandomKernelBranch:
    branch = RandomKernelBranch(input_size, features, max_dilation_for(length))
    generator = torch.Generator().manual_seed(seed)
    branch.fit(torch.randn(12, length, input_size, generator=generator))
    return branch


@pytest.mark.parametrize("length", [25, 33, 425, 1457])
def test_dilations_are_minirockets(length: int) -> None:
    """Same dilations and features per dilation as aeon's MiniRocket (lengths where (length-1)/8 is whole)."""
    minirocket = pytest.importorskip("aeon.transformations.collection.convolution_based._minirocket")
    dilations, counts = minirocket._fit_dilations(length, 10_000, 32)
    expected = [(int(d), int(c)) for d, c in zip(dilations, counts, strict=True)]
    assert dilations_and_counts(10_000, max_dilation_for(length)) == expected


def test_kernels_are_the_84_minirocket_kernels() -> None:
    branch = _branch()
    weight = branch.blocks[0].weight[:, 0]  # (84, 9)
    assert weight.shape == (NUM_KERNELS, 9)
    assert set(weight.unique().tolist()) == {-1.0, 2.0}
    assert bool((weight.sum(dim=1) == 0).all())  # three 2s and six -1s: each kernel sums to zero
    assert len({tuple(row.tolist()) for row in weight}) == NUM_KERNELS


def test_multivariate_kernels_read_random_feature_subsets() -> None:
    branch = _branch(input_size=5)
    reads = (branch.blocks[0].weight.abs().sum(dim=2) > 0).sum(dim=1)  # features read by each kernel
    assert int(reads.min()) >= 1 and int(reads.max()) <= 5 and len(set(reads.tolist())) > 1


def test_features_are_proportions_of_valid_steps() -> None:
    branch = _branch()
    x = torch.randn(4, 65, 1)
    proportions = branch.proportions(x, torch.tensor([65, 30, 9, 1]))
    assert proportions.shape == (4, branch.output_size) and branch.output_size == 840
    assert bool(((proportions >= 0) & (proportions <= 1)).all())
    # One valid step: each proportion is 0 or 1; thirty: a multiple of 1/30.
    assert set(proportions[3].unique().tolist()) <= {0.0, 1.0}
    thirtieths = proportions[1] * 30
    torch.testing.assert_close(thirtieths, thirtieths.round(), rtol=0, atol=1e-4)


def test_fit_sets_biases_and_standardises_the_training_features() -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(40, 50, 2, generator=generator).cumsum(dim=1)
    branch = RandomKernelBranch(2, 1000, max_dilation_for(50))
    assert not bool(branch.fitted)
    branch.fit(x)
    assert bool(branch.fitted)
    assert all(bool((block.biases != 0).any()) for block in branch.blocks)
    features = branch(x)
    torch.testing.assert_close(features.mean(dim=0), torch.zeros(branch.output_size), rtol=0, atol=1e-5)
    spread = features.std(dim=0, unbiased=False) * branch.output_size**0.5 / GAIN  # 1, or 0 for a constant feature
    assert bool(((spread - 1).abs() < 1e-3).logical_or(spread < 1e-6).all())
    again = RandomKernelBranch(2, 1000, max_dilation_for(50))
    again.fit(x)
    assert torch.equal(again(x), features)  # deterministic


def test_fit_scales_raw_inputs_like_the_model() -> None:
    """``fit(x, input_mean, input_std)`` equals ``fit((x - mean) / std)``: the model's scaling, applied per row."""
    x = 5.0 + 3.0 * torch.randn(20, 30, 2)
    mean, std = torch.tensor([5.0, 4.0]), torch.tensor([3.0, 2.0])
    scaled, raw = RandomKernelBranch(2, 300, 3), RandomKernelBranch(2, 300, 3)
    scaled.fit((x - mean) / std)
    raw.fit(x, None, mean, std)
    assert torch.equal(scaled.feature_mean, raw.feature_mean)
    for a, b in zip(scaled.blocks, raw.blocks, strict=True):
        torch.testing.assert_close(a.biases, b.biases, rtol=0, atol=1e-6)


def test_bad_rocket_options_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="rocket_features"):
        BiGRU(rocket_features=50)
    with pytest.raises(ValueError, match="rocket_max_dilation"):
        BiGRU(rocket_features=84, rocket_max_dilation=0)


def test_branch_widens_the_head() -> None:
    model = BiGRU(hidden_size=5, rocket_features=200)
    assert model.head.in_features == 10 + 168  # 200 // 84 = 2 biases per kernel


def _fit(args: list[str]) -> None:
    from bigru_lightning.cli import main as fit_main

    fit_main(args)


def test_training_fits_the_branch_once_and_resume_keeps_it(in_tmp: Path) -> None:
    """fit.py fits the branch on the training split; the checkpoint carries it; a resumed run does not refit."""
    common = ["--model.rocket_features", "168", "--model.hidden_size", "4", "--trainer.enable_progress_bar", "false"]
    _fit([*common, "--trainer.max_epochs", "1"])
    last = Path("lightning_logs/version_0/checkpoints/last.ckpt")
    first = Path("first.ckpt")
    first.write_bytes(last.read_bytes())
    state = torch.load(first, weights_only=False)["state_dict"]
    assert bool(state["net.rocket.fitted"]) and bool((state["net.rocket.blocks.0.biases"] != 0).any())
    _fit([*common, "--trainer.max_epochs", "2", "--ckpt_path", str(first)])
    newest = max(Path("lightning_logs").glob("version_*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    resumed = torch.load(newest, weights_only=False)
    for key in ("net.rocket.blocks.0.biases", "net.rocket.feature_mean", "net.rocket.feature_scale"):
        assert torch.equal(resumed["state_dict"][key], state[key]), key
    assert resumed["global_step"] == 2 * torch.load(first, weights_only=False)["global_step"]


def test_without_a_data_module_the_first_batch_fits_the_branch() -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from bigru_lightning.module import BiGRUClassifier

    x, y = torch.randn(32, 20, 1), torch.randint(0, 2, (32,))
    model = BiGRUClassifier(hidden_size=4, rocket_features=168)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    assert bool(model.net.rocket.fitted)  # type: ignore[union-attr]
    assert np.isfinite(model(x).detach().numpy()).all()


def test_training_memoises_each_sequences_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """In training, a sequence seen before is read from the memo, whatever its batch and padding."""
    branch = _branch(input_size=2, length=40)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(6, 40, 2, generator=generator)
    lengths = torch.tensor([40, 31, 17, 40, 9, 25])
    expected = branch.eval()(x, lengths)  # eval: computed, never memoised
    assert branch._memo == {}
    branch.train()
    computed: list[int] = []
    original = RandomKernelBranch.proportions

    def counting(self: RandomKernelBranch, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        computed.append(x.shape[0])
        return original(self, x, lengths)

    monkeypatch.setattr(RandomKernelBranch, "proportions", counting)
    torch.testing.assert_close(branch(x[:4], lengths[:4]), expected[:4])
    assert computed == [4]
    # the same sequences, another order, another batch width (padding): nothing is computed again
    order = torch.tensor([3, 1, 2])
    torch.testing.assert_close(
        branch(x[order, :31], lengths[order].clamp(max=31)), branch.eval()(x[order, :31], lengths[order].clamp(max=31))
    )
    branch.train()
    computed.clear()
    again = branch(x[[2, 1]][:, :31], lengths[[2, 1]])
    torch.testing.assert_close(again, expected[[2, 1]])
    assert computed == []
    out = branch(x, lengths)  # two new sequences among six: only they are computed
    torch.testing.assert_close(out, expected)
    assert computed == [2]
    # a changed branch forgets: fit, load_state_dict, a dtype conversion
    branch.fit(torch.randn(12, 40, 2, generator=generator))
    assert branch._memo == {}
    branch(x, lengths)
    branch.load_state_dict(branch.state_dict())
    assert branch._memo == {}
    branch(x, lengths)
    branch.double()
    assert branch._memo == {}


def test_memo_is_bounded_and_skips_inputs_with_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    import bigru_lightning.model.rocket as rocket

    branch = _branch(length=30).train()
    x = torch.randn(8, 30, 1)
    row_bytes = branch.output_size * 4 + 30 * 4
    monkeypatch.setattr(rocket, "MEMO_BYTES", 3 * row_bytes)
    first = branch(x)
    assert len(branch._memo) == 3 and branch._memo_bytes == 3 * row_bytes
    torch.testing.assert_close(branch(x), first)  # the rest computed again, the same values
    branch.clear_memo()
    leaf = x.clone().requires_grad_(True)
    branch(leaf)
    assert branch._memo == {}  # an input with a gradient (e.g. attributions) is never memoised
    branch.bfloat16()(x.bfloat16())  # a type numpy cannot read: computed, not memoised
    assert branch._memo == {}


_FIT_MEMORY_PROBE = """
import resource
import torch
from bigru_lightning.model.rocket import RandomKernelBranch
branch = RandomKernelBranch(3, 10_000, 6)
x = torch.randn(2048, 50, 3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
branch.fit(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_fit_holds_one_float32_copy_of_the_statistics_features() -> None:
    """Fitting 10,000 features on 2,048 sequences peaks near their one float32 copy (80 MB), not 4x it.

    Run in a fresh process so that its peak resident memory is the fit's own.
    """
    done = subprocess.run(
        [sys.executable, "-c", _FIT_MEMORY_PROBE], capture_output=True, text=True, env=script_env(), check=True
    )
    growth_mb = float(done.stdout.strip().splitlines()[-1])
    assert growth_mb < 240, f"the fit raised the peak by {growth_mb:.0f} MiB (features as float32: 79 MiB)"


def test_column_moments_equal_the_whole_matrix_float64_moments() -> None:
    """The blocked mean and std are bit-identical to float64 moments over the whole matrix (1 row too)."""
    generator = torch.Generator().manual_seed(0)
    for rows in (1, 2, 37, 300):
        features = torch.randint(0, 51, (rows, 2 * MOMENT_COLUMNS + 7), generator=generator).float() / 50
        mean, std = _column_moments(features)
        whole = features.double()
        assert torch.equal(mean, whole.mean(dim=0))
        if rows > 1:
            assert torch.equal(std, whole.std(dim=0, unbiased=False))
        else:
            assert torch.equal(std, torch.zeros(whole.shape[1], dtype=torch.float64))


def test_memo_of_a_large_training_set_stays_small() -> None:
    """An epoch over 4,000 sequences (160 MB of features) leaves at most 64 MiB memoised for the rest of the run."""
    branch = RandomKernelBranch(1, 10_000, 6)
    x = torch.randn(4000, 50, 1, generator=torch.Generator().manual_seed(0))
    branch.fit(x[:64])
    branch.train()
    with torch.no_grad():
        for start in range(0, len(x), 500):
            branch(x[start : start + 500])
    assert 0 < branch._memo_bytes <= 64 << 20
