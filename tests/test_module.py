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
    dm = GaussianDataModule(samples_per_class=40, batch_size=16)
    model = BiGRUClassifier(input_size=1, num_classes=2, hidden_size=8, pooling="mean")
    model.label_names = ["pos", "neg"]
    trainer = pl.Trainer(
        max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * 4  # 64 training sequences, batches of 16
    results = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert set(results) == {"test/loss", "test/acc", "test/f1", "test/auroc"}
    assert 0.0 <= results["test/acc"] <= 1.0
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
