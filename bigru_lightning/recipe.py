"""The default training recipe for the user's own files, chosen from facts about the data.

Pure decisions: :class:`DataFacts` in, a list of :class:`Choice` (dotted config key, value, reason)
out. No model, Lightning or file reading here; the CLI gathers the facts, fills the values the
user did not give into its config before anything is instantiated, prints each one once and saves
them in the run's ``config.yaml`` (see ``docs/recipe.md``).

The recipe, and why (measurements in ``docs/recipe.md``):

- **Mini-batches of about a tenth of the training set** (4 to 64 sequences): about ten noisy steps
  per epoch generalise better on small sets than the tutorial's one full batch.
- **A budget of about 700 optimizer steps** (as epochs: ``ceil(700 / batches per epoch)``, at least
  30): the head over the random-kernel features settles within it (1,000 and 800 steps gave the same
  accuracy medians within a point on the development sets and the sets checked beside them, for more
  time; 500 lost 1-4 points on some; 3,000, the GRU-FCN's budget, cost three times 1,000's time).
- **AdamW (torch's fused kernel: a quarter of the for-loop's time per step on the CPU), lr 3e-3,
  weight decay 1e-2, one-cycle schedule** (linear warm-up over the first 10% of
  the epochs, cosine decay to ~0): the last epochs settle, so the final weights are the ones to
  keep, without a validation split to pick them.
- **Gradient clipping at norm 1**: the GRU's occasional exploding step on long sequences.
- **No validation split for small files** (up to :data:`REFIT_MAX_SEQUENCES` training sequences and
  no ``val_file``): with a fixed budget and an annealed learning rate, nothing needs a validation
  set to be chosen, and every sequence trains the model (20% of 40 sequences is 8 lost examples
  and too few to choose anything on). Larger files keep the 20% split and test the best checkpoint.
- **Model**: the BiGRU (hidden size 64) with two branches beside it: MiniRocket's random kernels
  (about 10,000 features, dilations spanning the longest training sequence) and an FCN branch
  (GRU-FCN's conv blocks, ``[64, 128, 64]`` filters up to :data:`GRU_STEPS` steps, narrower on
  longer series so that its cost stays bounded); label smoothing 0.1, and a stride before the GRU on
  long sequences so it reads at most about :data:`GRU_STEPS` steps. Applied only where the model has
  these options. (A GRU-FCN without the random kernels was 6-16 points behind MiniRocket on two
  development sets; the random kernels without the FCN one test sequence behind it on the example
  files; docs/recipe.md.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bigru_lightning.model.rocket import max_dilation_for

BATCH_SHARE = 10  # batch size = training sequences / BATCH_SHARE ...
MIN_BATCH, MAX_BATCH = 4, 64  # ... within these bounds
STEP_BUDGET = 700  # optimizer steps
MIN_EPOCHS = 30
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-2
WARMUP_SHARE = 0.1
GRADIENT_CLIP = 1.0
SINGLE_THREAD_MAX_BATCH = 24  # batches up to this size train on one CPU thread (faster than two; docs/recipe.md)
CHECKPOINTS = 50  # checkpoints written per run at most with a validation split (the best is tested) ...
CHECKPOINTS_UNVALIDATED = 10  # ... and without one, ending at max_epochs (the last is tested; ~10 ms each)
REFIT_MAX_SEQUENCES = 500  # up to this many training sequences: no validation split
GRU_STEPS = 160  # longer sequences are strided so that the GRU reads at most about this many
HIDDEN_SIZE = 64
CONV_WIDTH = 64  # FCN branch: blocks of [w, 2w, w] filters (kernels 8/5/3), w = CONV_WIDTH up to GRU_STEPS steps ...
MIN_CONV_WIDTH = 16  # ... and narrower on longer series (cost ~ length x w^2 kept at that of GRU_STEPS steps)
ROCKET_FEATURES = 10_000
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class DataFacts:
    """What the recipe needs to know about the training data.

    Attributes:
        train_sequences: Sequences in the training file (before any validation split).
        max_length: Longest sequence, in steps.
        num_features: Features per step.
        num_classes: Number of classes.
        has_val_file: Whether the user gave a separate validation file.
    """

    train_sequences: int
    max_length: int
    num_features: int
    num_classes: int
    has_val_file: bool = False


@dataclass(frozen=True)
class Choice:
    """One automatic value: the dotted config key, the value and a short reason to print."""

    key: str
    value: Any
    reason: str

    def line(self) -> str:
        """``key: auto -> value (reason)``, the line printed at the start of a run."""
        return f"{self.key}: auto -> {self.value} ({self.reason})"


def holds_out_validation(facts: DataFacts) -> bool:
    """Whether the recipe keeps a validation split of the training file (only for larger files)."""
    return not facts.has_val_file and facts.train_sequences > REFIT_MAX_SEQUENCES


def batch_size(train_sequences: int) -> int:
    """About a tenth of the training sequences, within [MIN_BATCH, MAX_BATCH] (and at most all of them)."""
    size = round(train_sequences / BATCH_SHARE)
    return max(1, min(train_sequences, max(MIN_BATCH, min(MAX_BATCH, size))))


def downsample(max_length: int) -> int:
    """The stride before the GRU so that it reads at most about :data:`GRU_STEPS` steps (1 = none)."""
    return max(1, math.ceil(max_length / GRU_STEPS))


def conv_channels(max_length: int) -> list[int]:
    """The FCN branch's filters ``[w, 2w, w]`` for series of ``max_length`` steps.

    ``w`` is :data:`CONV_WIDTH` up to :data:`GRU_STEPS` steps; beyond, it shrinks with the square root
    of the length (a multiple of 8, at least :data:`MIN_CONV_WIDTH`), so that the branch, which reads
    every step, costs about what it costs on :data:`GRU_STEPS` steps (its work grows as length x w²).
    """
    width = CONV_WIDTH * math.sqrt(min(1.0, GRU_STEPS / max_length))
    w = max(MIN_CONV_WIDTH, 8 * math.floor(width / 8))
    return [w, 2 * w, w]


def warmup_share(epochs: int) -> float:
    """The one-cycle schedule's warm-up share: :data:`WARMUP_SHARE`, but never one epoch exactly.

    torch's ``OneCycleLR`` divides by zero when ``pct_start * total_steps`` is exactly 1 (e.g. 10
    epochs at 10%); such a run warms up over 1.5 epochs instead.
    """
    share = WARMUP_SHARE
    if math.isclose(share * epochs, 1.0):
        share = 1.5 / epochs
    return share


def checkpoint_interval(epochs: int, checkpoints: int = CHECKPOINTS) -> int:
    """Epochs between checkpoints: at most ``checkpoints`` of them, and a divisor of ``epochs``.

    A divisor, so the last epoch is always saved (and tested when there is no validation split).
    """
    bound = max(1, epochs // checkpoints)
    return max(d for d in range(1, bound + 1) if epochs % d == 0)


def choose_recipe(
    facts: DataFacts, fixed: Mapping[str, Any] | None = None, mixed_precision: bool = False
) -> list[Choice]:
    """Every automatic value for a run on ``facts``'s data, in the order they are printed.

    Keys are dotted paths into the CLI's config (``data.*``, ``trainer.*``, ``model.*``,
    ``optimizer``, ``lr_scheduler``, ``checkpoint.*``). ``fixed`` holds the values the user gave
    (same keys; ``optimizer.lr`` for the optimizer's learning rate): those are not chosen, and the
    values chosen follow from them (the epochs from the user's batch size, the schedule's length
    from the user's epochs, its peak from the user's learning rate). ``mixed_precision``: the run
    uses ``*-mixed`` precision, where Lightning refuses to clip the gradients of a fused optimizer
    (it unscales them itself), so the AdamW chosen is torch's unfused one.
    """
    if facts.train_sequences < 1 or facts.max_length < 1:
        raise ValueError(f"need at least one training sequence of one step; got {facts}")
    fixed = dict(fixed or {})
    choices: list[Choice] = []

    def choose(key: str, value: Any, reason: str) -> Any:
        if key in fixed:
            return fixed[key]
        choices.append(Choice(key, value, reason))
        return value

    n = facts.train_sequences
    if facts.has_val_file:
        validate = True
        trained_on = n
    else:
        default_fraction = 0.2 if holds_out_validation(facts) else 0.0
        reason = (
            f"{n} training sequences: 20% validate"
            if default_fraction
            else f"{n} <= {REFIT_MAX_SEQUENCES} training sequences: all of them train, none held out"
        )
        fraction = choose("data.val_fraction", default_fraction, reason)
        usable = isinstance(fraction, (int, float)) and 0 <= fraction < 1  # others: refused by the data module
        validate = not usable or fraction > 0
        trained_on = max(1, n - math.ceil(n * fraction)) if usable and validate else n
    batch = choose("data.batch_size", batch_size(trained_on), f"{trained_on} training sequences / {BATCH_SHARE}")
    batches_per_epoch = math.ceil(trained_on / batch) if isinstance(batch, int) and batch > 0 else 1
    if isinstance(batch, int) and batch <= SINGLE_THREAD_MAX_BATCH:
        choose("threads", 1, f"batches of {batch}: one CPU thread is faster than several on small batches")
    budget = STEP_BUDGET
    epochs = choose(
        "trainer.max_epochs",
        max(MIN_EPOCHS, math.ceil(budget / batches_per_epoch)),
        f"about {budget} optimizer steps at {batches_per_epoch} batches per epoch",
    )
    choose("trainer.gradient_clip_val", GRADIENT_CLIP, "clip the gradient norm")
    lr = fixed.get("optimizer.lr", LEARNING_RATE)
    if "optimizer" not in fixed:
        fused = {} if mixed_precision else {"fused": True}
        choose(
            "optimizer",
            {
                "class_path": "torch.optim.AdamW",
                "init_args": {"lr": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, **fused},
            },
            f"AdamW, lr {LEARNING_RATE}, weight decay {WEIGHT_DECAY}" + (", fused" if fused else ""),
        )
    if isinstance(epochs, int) and epochs > 0:
        choose(
            "lr_scheduler",
            {
                "class_path": "torch.optim.lr_scheduler.OneCycleLR",
                "init_args": {
                    "max_lr": lr,
                    "total_steps": epochs,
                    "pct_start": warmup_share(epochs),
                    "anneal_strategy": "cos",
                    "cycle_momentum": False,
                },
            },
            f"one cycle over {epochs} epochs: warm-up {WARMUP_SHARE:.0%}, cosine decay to ~0",
        )
    if isinstance(epochs, int) and epochs > 0:
        # With a validation split the best of the saved epochs is tested: many candidates. Without one,
        # the last epoch's is, and the others are there for a run that is killed; but a run that may
        # stop between epochs (max_steps, max_time) tests the last one saved: keep them close.
        stops_early = fixed.get("trainer.max_steps", -1) not in (None, -1) or fixed.get("trainer.max_time") is not None
        every = checkpoint_interval(epochs, CHECKPOINTS if validate or stops_early else CHECKPOINTS_UNVALIDATED)
        if every > 1:
            choose("checkpoint.every_n_epochs", every, f"{epochs // every} checkpoints over {epochs} epochs")
    if not validate:
        choose("checkpoint.monitor", None, "no validation split: the last epoch's weights are tested")
    choose("model.hidden_size", HIDDEN_SIZE, "file data")
    channels = conv_channels(facts.max_length)
    choose("model.conv_channels", channels, f"an FCN branch beside the BiGRU, narrower beyond {GRU_STEPS} steps")
    choose("model.rocket_features", ROCKET_FEATURES, "MiniRocket's random kernels beside the BiGRU")
    choose("model.rocket_max_dilation", max_dilation_for(facts.max_length), f"kernels span {facts.max_length} steps")
    choose("model.label_smoothing", LABEL_SMOOTHING, "few sequences per class")
    stride = downsample(facts.max_length)
    if stride > 1:
        choose("model.downsample", stride, f"{facts.max_length} steps: the GRU reads about {GRU_STEPS}")
    return choices


# -- applying the recipe to the CLI's parsed config -------------------------------------------------
FILE_DATA_CLASS = "FileDataModule"


def facts_of_files(train_file: str, has_val_file: bool, test_fraction: float | None = None) -> DataFacts:
    """Read ``train_file`` once for the facts the recipe needs.

    ``test_fraction``: the share of ``train_file`` split off for testing (None: a test file is given).
    """
    from bigru_lightning.data.files import read_sequences
    from bigru_lightning.data.labels import label_classes

    data = read_sequences(train_file, require_labels=True, param="data.train_file")
    assert data.labels is not None
    max_length = int(data.lengths.max()) if data.lengths is not None else data.num_steps
    classes = len(label_classes(data.labels).names)
    count = data.num_sequences
    if test_fraction is not None and 0 < test_fraction < 1:
        count -= math.ceil(count * test_fraction)
    return DataFacts(count, max_length, data.num_features, classes, has_val_file)


def flatten_keys(tree: Any) -> set[str]:
    """Every dotted key of a (jsonargparse) Namespace, leaves and their parents, ``init_args`` dropped."""
    keys: set[str] = set()
    for leaf in tree.keys():  # noqa: SIM118 (a Namespace iterates differently)
        parts = [part for part in str(leaf).split(".") if part != "init_args"]
        keys |= {".".join(parts[:end]) for end in range(1, len(parts) + 1)}
    return keys


def uses_recipe(config: Any) -> bool:
    """Whether the run reads files (``FileDataModule``): the only runs the recipe fills in."""
    data = config.get("data")
    return data is not None and str(data.get("class_path", "")).endswith(FILE_DATA_CLASS)


def apply_recipe(config: Any, given: set[str]) -> list[Choice]:
    """Fill the recipe's values into ``config`` (the CLI's parsed Namespace) where the user gave none.

    Only for ``FileDataModule`` runs; ``given`` holds the dotted keys the user set (on the command
    line or in a ``--config`` file, ``init_args`` dropped). Model options the model does not have
    are skipped. Returns the choices applied, for printing.
    """
    if not uses_recipe(config):
        return []
    init = config.data.init_args
    test_fraction = None if init.get("test_file") is not None else init.get("test_fraction")
    facts = facts_of_files(str(init.train_file), init.get("val_file") is not None, test_fraction)
    fixed: dict[str, Any] = {}
    for key in (
        "data.val_fraction",
        "data.batch_size",
        "trainer.max_epochs",
        "trainer.max_steps",
        "trainer.max_time",
        "threads",
    ):
        if key in given:
            fixed[key] = _get(config, key)
    if any(key == "optimizer" or key.startswith("optimizer.") for key in given):
        fixed["optimizer"] = config.get("optimizer")
    optimizer = config.get("optimizer")
    init_args = optimizer.get("init_args") if "optimizer" in fixed and optimizer is not None else None
    if init_args is not None and init_args.get("lr") is not None:
        fixed["optimizer.lr"] = init_args.lr
    for key in given:
        for root in ("lr_scheduler", "trainer.gradient_clip_val", "checkpoint.monitor"):
            if key == root or key.startswith(root + "."):
                fixed[root] = True
        if key.startswith("model."):
            fixed[key] = True
    applied = []
    mixed_precision = "mixed" in str(_get(config, "trainer.precision") or "")
    for choice in choose_recipe(facts, fixed, mixed_precision):
        if choice.key.startswith("model.") and choice.key.split(".", 1)[1] not in config.model:
            continue  # an option this model does not have
        _set(config, choice.key, choice.value)
        applied.append(choice)
    return applied


def _path(key: str) -> list[str]:
    parts = key.split(".")
    if parts[0] == "data":
        return ["data", "init_args", *parts[1:]]
    return parts


def _get(config: Any, key: str) -> Any:
    node = config
    for part in _path(key):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def _set(config: Any, key: str, value: Any) -> None:
    parts = _path(key)
    node = config
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = _as_config_value(value)


def _as_config_value(value: Any) -> Any:
    """Nested dicts become Namespaces, as jsonargparse holds them."""
    if isinstance(value, dict):
        from jsonargparse import Namespace

        return Namespace(**{k: _as_config_value(v) for k, v in value.items()})
    return value
