"""Data: the Gaussian generator and oracle, the DataModule's splits, the batcher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bigru_lightning.data import GaussianDataModule, GaussianTask, TensorBatcher
from bigru_lightning.errors import UserInputError


def test_default_splits_match_the_tutorial() -> None:
    dm = GaussianDataModule()
    dm.setup("fit")
    train, val, test = dm.train_split, dm.val_split, dm.test_split
    assert train is not None and val is not None and test is not None
    assert train.x.shape == (80, 20, 1) and val.x.shape == (20, 20, 1) and test.x.shape == (100, 20, 1)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert torch.bincount(train.y).tolist() == [40, 40]  # stratified
    assert torch.bincount(val.y).tolist() == [10, 10]
    assert torch.bincount(test.y).tolist() == [50, 50]
    assert dm.num_features == 1 and dm.num_classes == 2
    # class 0 is N(+1, 1), class 1 is N(-1, 1)
    assert train.x[train.y == 0].mean() == pytest.approx(1.0, abs=0.1)
    assert train.x[train.y == 1].mean() == pytest.approx(-1.0, abs=0.1)
    assert train.x[train.y == 0].std() == pytest.approx(1.0, abs=0.1)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = GaussianDataModule(seed=7), GaussianDataModule(seed=7), GaussianDataModule(seed=8)
    for dm in (a, b, c):
        dm.setup("fit")
    assert a.train_split is not None and b.train_split is not None and c.train_split is not None
    assert torch.equal(a.train_split.x, b.train_split.x) and torch.equal(a.test_split.x, b.test_split.x)  # type: ignore[union-attr]
    assert not torch.equal(a.train_split.x, c.train_split.x)


def test_test_set_is_independent_of_train() -> None:
    dm = GaussianDataModule(samples_per_class=30, test_samples_per_class=30)
    dm.setup("fit")
    assert dm.train_split is not None and dm.test_split is not None
    train_rows = {tuple(r) for r in dm.train_split.x.reshape(len(dm.train_split), -1).tolist()}
    test_rows = {tuple(r) for r in dm.test_split.x.reshape(len(dm.test_split), -1).tolist()}
    assert not train_rows & test_rows


def test_richer_task_shapes_priors_and_marginals() -> None:
    dm = GaussianDataModule(
        samples_per_class=2000,
        seq_len=12,
        num_features=2,
        means=[[0.0, 1.0], 2.0, -1.0],
        std=[1.0, 0.5, 2.0],
        phi=[0.0, 0.8, -0.5],
        class_priors=[0.5, 0.3, 0.2],
    )
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.num_features == 2
    assert dm.train_split is not None
    counts = torch.bincount(torch.cat([dm.train_split.y, dm.val_split.y]))  # type: ignore[union-attr]
    assert counts.tolist() == [3000, 1800, 1200]
    x1 = dm.train_split.x[dm.train_split.y == 1].numpy()
    assert x1.mean() == pytest.approx(2.0, abs=0.05)
    assert x1.std() == pytest.approx(0.5, abs=0.03)  # AR(1) keeps the marginal std
    lag1 = np.corrcoef(x1[:, 1:, 0].ravel(), x1[:, :-1, 0].ravel())[0, 1]
    assert lag1 == pytest.approx(0.8, abs=0.03)


def test_bayes_oracle_matches_closed_form_for_mean_shift() -> None:
    # means +-0.1, std 1, 20 steps: optimum Phi(0.2 * sqrt(20) / 2) = 0.6726
    dm = GaussianDataModule(means=[0.1, -0.1], test_samples_per_class=20000)
    expected = 0.5 * (1 + math.erf(0.2 * math.sqrt(20) / 2 / math.sqrt(2)))
    assert dm.bayes_accuracy() == pytest.approx(expected, abs=0.01)


def test_bayes_oracle_uses_temporal_structure() -> None:
    task = GaussianTask.from_arguments([0.0, 0.0], 1, 1.0, [0.0, 0.9], None)
    x, y = task.sample(np.array([3000, 3000]), 20, np.random.default_rng(0))
    accuracy = (task.bayes_predict(x) == y).mean()
    assert accuracy > 0.95  # equal means: only the correlation separates the classes


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"samples_per_class": -3}, "data.samples_per_class"),
        ({"samples_per_class": 1}, "data.samples_per_class"),
        ({"seq_len": 0}, "data.seq_len"),
        ({"means": [1.0]}, "data.means"),
        ({"means": [float("nan"), 1.0]}, "data.means"),
        ({"std": 0.0}, "data.std"),
        ({"phi": 1.0}, "data.phi"),
        ({"class_priors": [0.9, 0.9]}, "data.class_priors"),
        ({"val_fraction": 1.0}, "data.val_fraction"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"seed": -1}, "data.seed"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(UserInputError, match=key.replace(".", r"\.")):
        GaussianDataModule(**kwargs)  # type: ignore[arg-type]


def _tensors(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 3, 1).contiguous(), torch.arange(n)


def test_batcher_in_order_slices_everything() -> None:
    batcher = TensorBatcher(_tensors(10), batch_size=4)
    batches = list(batcher)
    assert len(batcher) == len(batches) == 3
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batcher_shuffle_depends_only_on_seed_and_epoch() -> None:
    a = TensorBatcher(_tensors(50), batch_size=7, shuffle=True, seed=3)
    b = TensorBatcher(_tensors(50), batch_size=7, shuffle=True, seed=3)
    a.set_epoch(0)
    epoch0 = torch.cat([batch[1] for batch in a])
    a.set_epoch(1)
    epoch1 = torch.cat([batch[1] for batch in a])
    b.set_epoch(1)  # a fresh batcher jumping straight to epoch 1 sees the same order
    assert torch.equal(torch.cat([batch[1] for batch in b]), epoch1)
    assert not torch.equal(epoch0, epoch1)
    assert sorted(epoch0.tolist()) == list(range(50))
    x, y = next(iter(a))
    assert torch.equal(x[:, 0, 0].long(), y)  # rows stay aligned across tensors


@pytest.mark.parametrize(("n", "world", "batch"), [(80, 2, 16), (81, 2, 16), (101, 3, 10), (7, 2, 3), (50, 4, 50)])
def test_batcher_shards_are_disjoint_equal_and_cover(n: int, world: int, batch: int) -> None:
    shards, counts = [], []
    for rank in range(world):
        batcher = TensorBatcher(_tensors(n), batch_size=batch, shuffle=True, seed=1, rank=rank, world_size=world)
        batcher.set_epoch(4)
        batches = list(batcher)
        assert len(batches) == len(batcher)
        assert all(len(b[1]) > 0 for b in batches)
        counts.append(len(batches))
        shards.append(torch.cat([b[1] for b in batches]).tolist())
    assert len(set(counts)) == 1
    seen = [i for shard in shards for i in shard]
    assert sorted(seen) == list(range(n))  # every sample exactly once per epoch


def test_datamodule_full_batch_by_default_and_set_size() -> None:
    dm = GaussianDataModule()
    dm.setup("fit")
    assert len(dm.train_dataloader()) == 1
    assert next(iter(dm.train_dataloader()))[0].shape == (80, 20, 1)
    dm_small = GaussianDataModule(batch_size=32)
    dm_small.setup("fit")
    assert [len(b[1]) for b in dm_small.train_dataloader()] == [32, 32, 16]


def test_each_split_comes_from_its_own_seed_stream() -> None:
    # The pool (train + val) and the test set are drawn from independent children of the seed, so the
    # order in which make_splits draws them (the pool is freed before the test set is drawn) changes no value.
    dm = GaussianDataModule(samples_per_class=30, seed=7, phi=0.5)
    dm.setup("fit")
    assert dm.train_split is not None and dm.val_split is not None and dm.test_split is not None
    pool_seq, test_seq = np.random.SeedSequence(7).spawn(2)
    counts = dm.task.class_counts(60)
    x_pool, _ = dm.task.sample(counts, dm.seq_len, np.random.default_rng(pool_seq))
    x_test, y_test = dm.task.sample(counts, dm.seq_len, np.random.default_rng(test_seq))
    assert torch.equal(dm.test_split.x, torch.from_numpy(x_test)) and torch.equal(
        dm.test_split.y, torch.from_numpy(y_test)
    )
    pool_rows = {row.tobytes() for row in x_pool}
    assert all(row.numpy().tobytes() in pool_rows for row in torch.cat([dm.train_split.x, dm.val_split.x]))
    assert len(dm.train_split) + len(dm.val_split) == len(x_pool)
