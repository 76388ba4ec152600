"""The project's one metric of its own: an exact AUROC that keeps the test predictions in a few large blocks.

Why torchmetrics' ``MulticlassAUROC`` does not do here: docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_auroc
from torchmetrics.utilities import dim_zero_cat


class ExactAUROC(Metric):
    """Macro one-vs-rest AUROC over every prediction, the same value as ``MulticlassAUROC(thresholds=None)``.

    ``MulticlassAUROC`` keeps one small tensor per batch; over thousands of test batches those
    long-lived blocks sit between each step's freed temporaries, so the heap cannot shrink (about
    +70 MiB over a 200,000-sequence test). Here the predictions are written into a few large blocks
    that double in size, and the list states hold views into them (gathered as usual under DDP).
    :meth:`pieces` gives this process's kept predictions back in large pieces, so that other metrics
    can be updated from them once at the end of the stage instead of once per batch.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.preds: list[torch.Tensor]
        self.target: list[torch.Tensor]
        self._blocks: tuple[torch.Tensor, torch.Tensor] | None = None
        self._filled = 0

    def update(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        """Keep the batch's class probabilities (batch, classes) and targets (batch,)."""
        size = int(target.shape[0])
        if self._blocks is None or self._filled + size > self._blocks[1].shape[0]:
            capacity = max(64 * size, 2 * (self._blocks[1].shape[0] if self._blocks is not None else 0))
            self._blocks = (
                probabilities.new_empty((capacity, probabilities.shape[-1])),
                target.new_empty((capacity,)),
            )
            self._filled = 0
        preds_block, target_block = self._blocks
        stop = self._filled + size
        preds_block[self._filled : stop] = probabilities.detach()
        target_block[self._filled : stop] = target
        self.preds.append(preds_block[self._filled : stop])
        self.target.append(target_block[self._filled : stop])
        self._filled = stop

    def pieces(self, rows: int = 65_536) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The kept (probabilities, targets) of this process in order, joined into pieces of at least ``rows`` rows.

        Local to the process (not gathered): metrics updated from the pieces sync their own states.
        """
        preds: list[torch.Tensor] = []
        target: list[torch.Tensor] = []
        held = 0
        for batch_preds, batch_target in zip(self.preds, self.target, strict=True):
            preds.append(batch_preds)
            target.append(batch_target)
            held += batch_target.shape[0]
            if held >= rows:
                yield torch.cat(preds), torch.cat(target)
                preds, target, held = [], [], 0
        if target:
            yield torch.cat(preds), torch.cat(target)

    def compute(self) -> torch.Tensor:
        """Macro AUROC of everything seen since the last reset."""
        return multiclass_auroc(
            dim_zero_cat(self.preds), dim_zero_cat(self.target), self.num_classes, average="macro", validate_args=False
        )

    def reset(self) -> None:
        """Forget the predictions and their blocks."""
        super().reset()
        self._blocks = None
        self._filled = 0
