"""Class imbalance: ``--model.class_weights auto`` (inverse frequency on the training split) or a list."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional

from bigru_lightning.cli import hand_data_facts_to_model, main
from bigru_lightning.data import GaussianDataModule
from bigru_lightning.module import BiGRUClassifier

PRIORS = "--data.class_priors=[0.8, 0.2]"


def _train_counts(**kwargs: object) -> torch.Tensor:
    dm = GaussianDataModule(**kwargs)  # type: ignore[arg-type]
    dm.setup("fit")
    assert dm.train_split is not None
    return torch.bincount(dm.train_split.y, minlength=dm.num_classes)


def test_auto_weights_are_the_inverse_training_frequencies() -> None:
    dm = GaussianDataModule(class_priors=[0.8, 0.2])
    dm.setup("fit")
    model = BiGRUClassifier(class_weights="auto")
    assert model.class_weight.tolist() == [1.0, 1.0]  # until the data is known
    hand_data_facts_to_model(dm, model)
    counts = _train_counts(class_priors=[0.8, 0.2])
    assert counts.tolist() == [64, 16]  # 80/20 of the 100-sequence pool, 80 % of it for training
    # n / (K * n_k): inverse frequency, scaled so a balanced split gets weight 1
    assert model.class_weight.tolist() == pytest.approx([80 / (2 * 64), 80 / (2 * 16)])
    assert (model.class_weight * counts).tolist() == pytest.approx([40.0, 40.0])  # each class weighs the same


def test_no_weights_and_listed_weights_ignore_the_data() -> None:
    dm = GaussianDataModule(class_priors=[0.8, 0.2])
    dm.setup("fit")
    for class_weights, expected in ((None, [1.0, 1.0]), ([1.0, 3.0], [1.0, 3.0])):
        model = BiGRUClassifier(class_weights=class_weights)
        hand_data_facts_to_model(dm, model)
        assert model.class_weight.tolist() == expected


def test_auto_weights_with_three_classes() -> None:
    dm = GaussianDataModule(means=[1.0, 0.0, -1.0], class_priors=[0.5, 0.3, 0.2], samples_per_class=100)
    dm.setup("fit")
    model = BiGRUClassifier(num_classes=3, class_weights="auto")
    hand_data_facts_to_model(dm, model)
    counts = _train_counts(means=[1.0, 0.0, -1.0], class_priors=[0.5, 0.3, 0.2], samples_per_class=100).double()
    assert model.class_weight.double().tolist() == pytest.approx((counts.sum() / (3 * counts)).tolist())


def test_weighted_loss_is_what_trains() -> None:
    model = BiGRUClassifier(class_weights=[1.0, 4.0])
    x, y = torch.randn(6, 5, 1), torch.tensor([0, 0, 0, 0, 1, 1])
    loss = model.training_step((x, y), 0)
    expected = functional.cross_entropy(model(x), y, weight=torch.tensor([1.0, 4.0]))
    assert float(loss) == pytest.approx(float(expected))
    assert float(loss) != pytest.approx(float(functional.cross_entropy(model(x), y)))


@pytest.mark.parametrize(
    ("option", "expected"),
    [("--model.class_weights=auto", [0.625, 2.5]), ("--model.class_weights=[2.0, 0.5]", [2.0, 0.5])],
)
def test_class_weights_end_to_end(in_tmp: Path, option: str, expected: list[float]) -> None:
    metrics = main([PRIORS, option, "--model.hidden_size=4", "--trainer.max_epochs=2"])
    assert {"test/acc", "test/bayes_acc"} <= set(metrics)
    checkpoint = torch.load(in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["state_dict"]["class_weight"].tolist() == pytest.approx(expected)
    reloaded = BiGRUClassifier.load_from_checkpoint(in_tmp / "lightning_logs/version_0/checkpoints/last.ckpt")
    assert reloaded.class_weight.tolist() == pytest.approx(expected)  # kept with the model


def test_bad_class_weights_exit_2(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--model.class_weights=[1.0, 2.0, 3.0]"])
    assert exit_info.value.code == 2
    assert "model.class_weights" in capsys.readouterr().err
    assert not (in_tmp / "lightning_logs").exists() or not list((in_tmp / "lightning_logs").iterdir())
