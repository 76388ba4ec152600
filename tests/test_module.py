"""The LightningModule: steps, metrics, predict, checkpoint round trip without the CLI."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from bigru_lightning.data import GaussianDataModule
from bigru_lightning.errors import UserInputError
from bigru_lightning.module import BiGRUClassifier


def test_predict_step_returns_probabilities() -> None:
    model = BiGRUClassifier(input_size=2, num_classes=3).eval()
    probs = model.predict_step((torch.randn(4, 5, 2), torch.zeros(4, dtype=torch.long)), 0)
    assert probs.shape == (4, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(4))


def test_input_scaling_is_applied_and_saved() -> None:
    model = BiGRUClassifier(input_size=1)
    x = torch.randn(3, 4, 1)
    plain = model(x)
    model.set_input_scaling(torch.tensor([2.0]), torch.tensor([4.0]))
    assert torch.allclose(model(x * 4 + 2), plain, atol=1e-6)
    assert "feature_mean" in model.state_dict()


def test_class_weights_validation() -> None:
    with pytest.raises(UserInputError, match=r"model\.class_weights"):
        BiGRUClassifier(num_classes=2, class_weights=[1.0])
    with pytest.raises(UserInputError, match=r"model\.hidden_size"):
        BiGRUClassifier(hidden_size=0)


def test_trains_and_reloads_from_checkpoint_without_cli(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = GaussianDataModule(samples_per_class=40, batch_size=16, means=[0.15, -0.15])  # optimum about 75 %
    model = BiGRUClassifier(input_size=1, num_classes=2, hidden_size=8, pooling="mean")
    model.label_names = ["pos", "neg"]
    trainer = pl.Trainer(
        max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * 4  # 64 training sequences, batches of 16
    val_acc = float(trainer.callback_metrics["val/acc"])  # the last validation ran with the final weights
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert set(results) == {"test/loss", "test/acc", "test/f1", "test/auroc"}
    # val/acc and test/acc are the share of sequences whose most probable class is the label
    for split, loader, logged in (
        (dm.val_split, dm.val_dataloader(), val_acc),
        (dm.test_split, dm.test_dataloader(), results["test/acc"]),
    ):
        probabilities = torch.cat(trainer.predict(model, dataloaders=loader))  # type: ignore[arg-type]
        assert split is not None and probabilities.shape == (len(split), 2)
        expected = (probabilities.argmax(dim=1) == split.y).float().mean().item()
        assert 0.0 < expected < 1.0  # a task hard enough that a wrong count would show
        assert logged == pytest.approx(expected, abs=1e-6)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = BiGRUClassifier.load_from_checkpoint(ckpt)
    assert restored.hparams["pooling"] == "mean" and restored.hparams["hidden_size"] == 8
    assert restored.label_names == ["pos", "neg"]
    x = torch.randn(3, 20, 1)
    assert torch.allclose(restored.eval()(x), model.eval()(x))


def test_label_smoothing_is_used_in_the_loss() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 5, 1), torch.tensor([0, 1, 1, 0, 1, 0])
    smooth = BiGRUClassifier(label_smoothing=0.2)
    plain = BiGRUClassifier()
    plain.load_state_dict(smooth.state_dict())
    logits = smooth(x)
    expected = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.2)
    torch.testing.assert_close(smooth.training_step((x, y), 0), expected)
    assert not torch.allclose(plain.training_step((x, y), 0), expected)


def test_exact_auroc_equals_torchmetrics_auroc_over_many_batches() -> None:
    from torchmetrics.classification import MulticlassAUROC

    from bigru_lightning.metrics import ExactAUROC

    generator = torch.Generator().manual_seed(0)
    ours, reference = ExactAUROC(3), MulticlassAUROC(3, average="macro", thresholds=None)
    for _ in range(2):  # twice: reset must forget the first pass and its blocks
        ours.reset()
        reference.reset()
        for size in [7] * 40 + [300, 5]:  # enough batches to outgrow the first block
            probabilities = torch.rand(size, 3, generator=generator).softmax(dim=-1)
            target = torch.randint(0, 3, (size,), generator=generator)
            ours.update(probabilities, target)
            reference.update(probabilities, target)
        assert torch.allclose(ours.compute(), reference.compute(), atol=1e-6)
    assert sum(len(t) for t in ours.target) == 40 * 7 + 305


def test_test_metrics_scored_at_the_end_equal_torchmetrics_fed_batch_by_batch() -> None:
    """Accuracy, macro F1, confusion and binned ROC scored once from the kept predictions (over several
    pieces, a class never in the targets) equal torchmetrics' metrics updated on every batch."""
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
        MulticlassROC,
    )

    classes = 4
    model = BiGRUClassifier(input_size=1, num_classes=classes)
    references = {
        "test/acc": MulticlassAccuracy(classes, average="micro"),
        "test/f1": MulticlassF1Score(classes, average="macro"),
        "confusion": MulticlassConfusionMatrix(classes),
        "roc": MulticlassROC(classes, thresholds=201),
    }
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():  # as under the Trainer's test loop
        for size in [256] * 300 + [17]:  # 76,817 rows: two pieces of the kept predictions
            probabilities = (3 * torch.randn(size, classes, generator=generator)).softmax(dim=-1)
            target = torch.randint(0, classes - 1, (size,), generator=generator)  # class 3: predicted, never true
            model._test_predictions().update(probabilities, target)
            for reference in references.values():
                reference.update(probabilities, target)
        assert len(list(model._test_predictions().pieces())) == 2
        model.score_test_predictions()
        scores = model._metrics("test").compute()
    assert float(scores["test/acc"]) == pytest.approx(float(references["test/acc"].compute()), abs=1e-7)
    assert float(scores["test/f1"]) == pytest.approx(float(references["test/f1"].compute()), abs=1e-7)
    assert 0.2 < float(scores["test/acc"]) < 0.5  # not a degenerate case
    assert torch.equal(model.test_confusion.compute(), references["confusion"].compute())
    for mine, theirs in zip(model.test_roc.compute(), references["roc"].compute(), strict=True):
        assert torch.equal(mine, theirs)


def test_default_optimizer_is_the_tutorials_adam_with_the_fused_kernel() -> None:
    """configure_optimizers: Adam, lr 0.01, fused; its steps match the unfused Adam's to rounding."""
    torch.manual_seed(0)
    fused_model, plain_model = BiGRUClassifier(hidden_size=8), BiGRUClassifier(hidden_size=8)
    plain_model.load_state_dict(fused_model.state_dict())
    before = [p.detach().clone() for p in fused_model.parameters()]
    fused = fused_model.configure_optimizers()
    assert isinstance(fused, torch.optim.Adam) and fused.defaults["lr"] == 0.01 and fused.defaults["fused"]
    plain = torch.optim.Adam(plain_model.parameters(), lr=0.01)
    x, y = torch.randn(16, 10, 1), torch.randint(0, 2, (16,))
    for _ in range(5):
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for after_fused, after_plain in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        assert torch.allclose(after_fused, after_plain, atol=1e-6)
    assert all(not torch.equal(a, b) for a, b in zip(fused_model.parameters(), before, strict=True))  # it stepped


def test_epoch_loss_is_the_mean_over_sequences_not_over_batches() -> None:
    """A batch of 3 and a batch of 1: the epoch's loss weights each by its size, and a NaN stays visible."""
    model = BiGRUClassifier(input_size=1, num_classes=2)
    batches = [(torch.randn(3, 4, 1), torch.tensor([0, 1, 1])), (torch.randn(1, 4, 1), torch.tensor([0]))]
    with torch.no_grad():
        losses = [model._shared_step(batch, "val")[0] for batch in batches]
    expected = (3 * losses[0] + losses[1]) / 4
    assert float(model.epoch_loss("val")) == pytest.approx(float(expected), rel=1e-6)
    with torch.no_grad():
        model._shared_step((torch.full((2, 4, 1), float("nan")), torch.tensor([0, 1])), "val")
    assert torch.isnan(model.epoch_loss("val"))
