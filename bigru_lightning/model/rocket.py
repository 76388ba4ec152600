"""A random-kernel convolution branch (MiniRocket, Dempster et al. 2021) beside the BiGRU, padding-safe.

Fixed, untrained convolutions read the sequence at many scales; each output channel is summarised by
the *proportion of positive values* (PPV) over the valid steps after subtracting a bias, and the
proportions (about ``num_features`` of them) join the GRU's summary in the linear head, which learns
how to weigh both. Nothing in the branch is trained by gradient descent: its biases are quantiles of
its own convolution outputs on training sequences, set once by :meth:`RandomKernelBranch.fit`
before training (the checkpoint keeps them), and its features are standardised with their training
mean and standard deviation, also set by :meth:`~RandomKernelBranch.fit`.

The kernels are MiniRocket's: the 84 kernels of length 9 with weights -1 except three weights of 2,
dilated exponentially from 1 to ``max_dilation`` (about (length - 1) / 8), 'same' zero padding. With
several features, each kernel at each dilation sums a random subset of the features (MiniRocket's
multivariate form). Padding never counts: padded steps are set to zero before the convolutions (what
the zero padding of the sequence alone puts there) and the proportions count valid steps only.

The features of a sequence never change once the branch is fitted, so in training (on the CPU,
inputs without gradients) they are memoised per sequence, keyed by its valid steps' bytes: every
epoch after the first reads them instead of convolving again (the branch was about two thirds of a
training step's time on OSULeaf). The memo holds at most :data:`MEMO_BYTES` and is dropped whenever
the branch is fitted, loaded, moved or converted.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from bigru_lightning.model.steps import full_lengths, valid_steps

KERNEL_LENGTH = 9
KERNEL_INDICES = list(itertools.combinations(range(KERNEL_LENGTH), 3))  # positions of the three 2s: 84 kernels
NUM_KERNELS = len(KERNEL_INDICES)
MAX_DILATIONS = 32  # distinct dilations per kernel at most (MiniRocket's default)
GOLDEN = (math.sqrt(5.0) + 1.0) / 2.0
FIT_SEED = 20210101  # the kernels' feature subsets and the bias examples are drawn from this seed
STATS_SEQUENCES = 2048  # training sequences (at most) whose features give the standardisation
FIT_CHUNK = 64  # sequences per forward while fitting
MOMENT_COLUMNS = 512  # feature columns per float64 block when taking the features' mean and std
GAIN = 3.0  # standardised features x GAIN / sqrt(features): a head start over the GRU's summary (docs/models.md)
# Memoised training features (and their keys) at most, per branch: 1,600 sequences of 10,080 features,
# more than the small sets where the memo pays (OSULeaf: 200). It stays in memory for the whole run, so
# it is kept small: at 512 MiB a run on 32,000 training sequences peaked at 1.40 GB instead of 0.84 GB
# (docs/performance.md, "Memory of a file run"). Bigger sets recompute the features that do not fit.
MEMO_BYTES = 64 << 20


def dilations_and_counts(num_features: int, max_dilation: int) -> list[tuple[int, int]]:
    """MiniRocket's dilations and the number of biases (features per kernel) at each.

    ``num_features // 84`` biases per kernel are spread over at most :data:`MAX_DILATIONS`
    exponentially spaced dilations from 1 to ``max_dilation``; dilations that round to the same
    integer are merged and keep their share.
    """
    per_kernel = num_features // NUM_KERNELS
    slots = min(per_kernel, MAX_DILATIONS)
    multiplier = per_kernel / slots
    raw = np.logspace(0, math.log2(max(1, max_dilation)), slots, base=2).astype(np.int32).tolist()
    merged: dict[int, int] = {}
    for dilation in raw:
        merged[dilation] = merged.get(dilation, 0) + 1
    counts = [(dilation, int(count * multiplier)) for dilation, count in sorted(merged.items())]
    remainder = per_kernel - sum(count for _, count in counts)
    position = 0
    while remainder > 0:
        dilation, count = counts[position]
        counts[position] = (dilation, count + 1)
        remainder -= 1
        position = (position + 1) % len(counts)
    return counts


def max_dilation_for(length: int) -> int:
    """MiniRocket's largest dilation for sequences of ``length`` steps: the kernel spans the sequence."""
    return max(1, (length - 1) // (KERNEL_LENGTH - 1))


class DilatedKernels(nn.Module):
    """The 84 kernels at one dilation, each with ``num_biases`` biases: (batch, 84 * num_biases) proportions.

    Args:
        weight: Kernel weights (84, features, 9), zero on the features a kernel does not read.
        dilation: Spacing of the kernel's taps.
        num_biases: Biases (features) per kernel at this dilation.
    """

    def __init__(self, weight: torch.Tensor, dilation: int, num_biases: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.padding = (KERNEL_LENGTH - 1) * dilation // 2
        self.register_buffer("weight", weight)
        self.num_biases = num_biases
        self.register_buffer("biases", torch.zeros(NUM_KERNELS, num_biases))
        self.weight: torch.Tensor
        self.biases: torch.Tensor

    def convolve(self, h: torch.Tensor) -> torch.Tensor:
        """Kernel outputs (batch, 84, time) of zero-padded ``h`` (batch, features, time), 'same' length."""
        return functional.conv1d(h, self.weight, padding=self.padding, dilation=self.dilation)

    def forward(self, h: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Proportion of valid steps where each kernel's output exceeds each of its biases.

        Args:
            h: Sequences (batch, features, time), zero on padded steps.
            valid: (batch, 1, time) True on valid steps.
            counts: (batch, 1) valid steps per sequence, as floats.

        Returns:
            (batch, 84 * num_biases), kernel-major. One comparison pass per bias over (batch, 84, time)
            (a single broadcast over all biases is several times slower on CPU).
        """
        out = self.convolve(h).masked_fill(~valid, float("-inf"))  # padded steps never exceed a bias
        columns = [(out > self.biases[:, index : index + 1]).sum(dim=2) for index in range(self.num_biases)]
        return (torch.stack(columns, dim=2).flatten(1).to(h.dtype)) / counts


class RandomKernelBranch(nn.Module):
    """MiniRocket features over the valid steps, standardised: (batch, :attr:`output_size`).

    Each feature is centred, divided by its training standard deviation and multiplied by
    ``GAIN / sqrt(number of features)``: with thousands of inputs, the head's Adam steps (about ``lr``
    per weight) would otherwise move the logits ~100 times more per step than the GRU's summary does
    (measured: 24-42% instead of 86-88% on PickupGestureWiimoteZ with the head alone); :data:`GAIN`
    gives the fixed features a head start over the GRU's learned ones.

    Args:
        input_size: Features per step.
        num_features: About how many proportions to compute (rounded down to a multiple of 84).
        max_dilation: Largest dilation; :func:`max_dilation_for` gives MiniRocket's choice for a length.
    """

    def __init__(self, input_size: int, num_features: int, max_dilation: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(FIT_SEED)
        base = torch.full((NUM_KERNELS, KERNEL_LENGTH), -1.0)
        for kernel, positions in enumerate(KERNEL_INDICES):
            base[kernel, list(positions)] = 2.0
        blocks = []
        for dilation, num_biases in dilations_and_counts(num_features, max_dilation):
            weight = base.unsqueeze(1).repeat(1, input_size, 1)
            if input_size > 1:
                weight = weight * _feature_subsets(input_size, generator).unsqueeze(2)
            blocks.append(DilatedKernels(weight, dilation, num_biases))
        self.blocks = nn.ModuleList(blocks)
        self.output_size = sum(NUM_KERNELS * int(block.biases.shape[1]) for block in blocks)
        self.register_buffer("feature_mean", torch.zeros(self.output_size))
        self.register_buffer("feature_scale", torch.full((self.output_size,), self._gain()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.feature_mean: torch.Tensor
        self.feature_scale: torch.Tensor
        self.fitted: torch.Tensor
        self._memo: dict[bytes, torch.Tensor] = {}
        self._memo_bytes = 0

    def _gain(self) -> float:
        return GAIN / math.sqrt(self.output_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised proportions (batch, output_size) of ``x`` (batch, time, features), padded at the end."""
        if not torch.jit.is_scripting() and self.training and _memoisable(x):
            raw = self._memoised_proportions(x, lengths)
        else:
            raw = self.proportions(x, lengths)
        return (raw - self.feature_mean) * self.feature_scale

    @torch.jit.unused
    def _memoised_proportions(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """:meth:`proportions`, read from the memo for sequences seen before (keyed by their valid steps)."""
        steps = [x.shape[1]] * x.shape[0] if lengths is None else lengths.tolist()
        values = x.detach().numpy()
        keys = [values[row, :length].tobytes() for row, length in enumerate(steps)]
        rows: list[torch.Tensor | None] = [self._memo.get(key) for key in keys]
        missing = [row for row, found in enumerate(rows) if found is None]
        if missing:
            index = torch.tensor(missing)
            fresh = self.proportions(x[index], None if lengths is None else lengths[index])
            for position, row in enumerate(missing):
                rows[row] = fresh[position]
                self._remember(keys[row], fresh[position])
        return torch.stack(cast(list[torch.Tensor], rows))

    @torch.jit.unused
    def _remember(self, key: bytes, features: torch.Tensor) -> None:
        size = len(key) + features.numel() * features.element_size()
        if key not in self._memo and self._memo_bytes + size <= MEMO_BYTES:
            self._memo[key] = features.clone()
            self._memo_bytes += size

    @torch.jit.unused
    def clear_memo(self) -> None:
        """Forget the memoised features (the branch changed, or its inputs' device or type did)."""
        self._memo = {}
        self._memo_bytes = 0

    def _apply(self, fn: Any, recurse: bool = True) -> RandomKernelBranch:
        self.clear_memo()
        return cast(RandomKernelBranch, super()._apply(fn, recurse))

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.clear_memo()
        super()._load_from_state_dict(*args, **kwargs)

    def proportions(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The raw proportions in [0, 1], (batch, output_size)."""
        time = x.shape[1]
        if lengths is None:
            lengths = full_lengths(x)
        mask = valid_steps(lengths, time)
        h = x.masked_fill(~mask.unsqueeze(2), 0.0).transpose(1, 2)
        valid = mask.unsqueeze(1)
        counts = lengths.to(x.dtype).unsqueeze(1)
        return torch.cat([block(h, valid, counts) for block in self.blocks], dim=1)

    @torch.no_grad()
    def fit(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        input_mean: torch.Tensor | None = None,
        input_std: torch.Tensor | None = None,
    ) -> None:
        """Set the biases and the standardisation from training sequences ``x`` (N, time, features).

        The branch sees ``(x - input_mean) / input_std`` (the model's input scaling; None: ``x``
        itself); only the sequences drawn are read and scaled, so ``x`` may be memory-mapped. Each
        kernel at each dilation takes its biases from the outputs of one training sequence drawn at
        random, at MiniRocket's low-discrepancy quantiles; the features' mean and standard deviation come from up to
        :data:`STATS_SEQUENCES` training sequences. Deterministic: the same data give the same branch.
        """
        self.clear_memo()
        generator = torch.Generator().manual_seed(FIT_SEED + 1)
        count = int(x.shape[0])
        lengths = full_lengths(x).cpu() if lengths is None else lengths.to(torch.int64).cpu()
        device = self.feature_mean.device
        shift = torch.zeros(()) if input_mean is None else input_mean.to(device, torch.float32)
        divide = torch.ones(()) if input_std is None else input_std.to(device, torch.float32)

        def rows(index: torch.Tensor, steps: int) -> torch.Tensor:
            # index_select: what every row source offers (tensors, memory maps, the store's TensorRows)
            picked = x.index_select(0, index.to(x.device))[:, :steps]
            return (picked.to(device=device, dtype=torch.float32) - shift) / divide

        for block in self.blocks:
            assert isinstance(block, DilatedKernels)
            picks = torch.randint(count, (NUM_KERNELS,), generator=generator)
            num_biases = int(block.biases.shape[1])
            quantiles = torch.tensor(
                [(index * GOLDEN) % 1.0 for index in range(1, NUM_KERNELS * num_biases + 1)], dtype=torch.float64
            ).view(NUM_KERNELS, num_biases)
            for kernel in range(NUM_KERNELS):
                example = int(picks[kernel])
                steps = int(lengths[example])
                sequence = rows(picks[kernel : kernel + 1], steps)
                output = functional.conv1d(
                    sequence.transpose(1, 2),
                    block.weight[kernel : kernel + 1],
                    padding=block.padding,
                    dilation=block.dilation,
                )[0, 0]
                values = torch.quantile(output.double(), quantiles[kernel].to(device))
                block.biases[kernel] = values.to(block.biases.dtype)
        chosen = torch.randperm(count, generator=generator)[:STATS_SEQUENCES].sort().values
        # Filled in place, not a list of chunks concatenated: one copy of the (2048, ~10,000) features.
        features = torch.empty(len(chosen), self.output_size, device=device)
        for start in range(0, len(chosen), FIT_CHUNK):
            index = chosen[start : start + FIT_CHUNK]
            steps = int(lengths[index].max())
            batch = rows(index, steps)
            features[start : start + len(index)] = self.proportions(batch, lengths[index].to(device))
        mean, std = _column_moments(features)
        self.feature_mean.copy_(mean.float())
        scale = torch.where(std > 1e-6, 1.0 / std.clamp(min=1e-6), torch.ones_like(std)) * self._gain()
        self.feature_scale.copy_(scale.float())
        self.fitted.fill_(True)


def _column_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) standard deviation of each column of ``features`` (rows, columns), in float64.

    Computed :data:`MOMENT_COLUMNS` columns at a time, so the float64 copy is a slice, never the whole
    matrix (160 MB at 2,048 sequences x 10,000 features); each column's reduction is the same as over
    the whole matrix, so the values are too.
    """
    rows, columns = features.shape
    mean = torch.empty(columns, dtype=torch.float64, device=features.device)
    std = torch.zeros(columns, dtype=torch.float64, device=features.device)
    for start in range(0, columns, MOMENT_COLUMNS):
        block = features[:, start : start + MOMENT_COLUMNS].double()
        mean[start : start + MOMENT_COLUMNS] = block.mean(dim=0)
        if rows > 1:
            std[start : start + MOMENT_COLUMNS] = block.std(dim=0, unbiased=False)
    return mean, std


def _memoisable(x: torch.Tensor) -> bool:
    """Whether ``x``'s features may come from the memo: on the CPU, no gradient, a type numpy reads."""
    return x.device.type == "cpu" and not x.requires_grad and x.dtype in (torch.float32, torch.float64, torch.float16)


def _feature_subsets(input_size: int, generator: torch.Generator) -> torch.Tensor:
    """(84, input_size) 0/1: each kernel reads a random subset of 1 to min(features, 9) features.

    The subset size is ``floor(2 ** u)``, ``u`` uniform in [0, log2(min(features, 9) + 1)), as in
    MiniRocket's multivariate form.
    """
    top = math.log2(min(input_size, KERNEL_LENGTH) + 1)
    mask = torch.zeros(NUM_KERNELS, input_size)
    for kernel in range(NUM_KERNELS):
        size = int(2.0 ** (float(torch.rand((), generator=generator)) * top))
        size = max(1, min(input_size, size))
        chosen = torch.randperm(input_size, generator=generator)[:size]
        mask[kernel, chosen] = 1.0
    return mask
