"""How a soft prompt trains (:class:`TrainConfig`, each field's help stated once), and what a training returns or
raises."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum


from ..engine import DEFAULT_MAX_LENGTH, ReadoutConfig
from ..engine.options import enum_value
from ..errors import ConfigError, XlsptError
from ..soft_prompt import SoftPrompt

#: Learning rate of the model's weights when it trains too (no model freezing): a fine-tuning
#: rate chosen on English dev (README); the reference code's single rate, 5e-3, destroys the model.
DEFAULT_MODEL_LR = 1e-4


class TrainingLoss(str, Enum):
    """What the training loss reads at the read-out position: ``vocabulary``, the cross-entropy of the label
    word over the model's whole vocabulary (the study's reference code); ``label-words``, the cross-entropy
    over the classes only (a softmax over their label words' logits, as prediction reads them)."""

    VOCABULARY = "vocabulary"
    LABEL_WORDS = "label-words"


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the study's.

    Args:
        epochs: passes over the training examples (the study used 20 to 50).
        lr: AdamW learning rate of the prompt (and its reparameterization network).
        batch_size: training examples per step.
        warmup_ratio: share of all steps spent warming the learning rate up linearly.
        weight_decay: AdamW weight decay (PyTorch's default).
        seed: seeds the prompt initialisation and the order of examples.
        max_length: text + prompt + EOS are truncated (text only) to this many tokens.
        freeze_model: train only the prompt (the study's "MF"); otherwise the model trains too,
            with float32 master weights whatever the model's dtype.
        model_lr: learning rate of the model's weights when ``freeze_model`` is False.
        eval_batch_size: batch size for validation and evaluation passes.
        engine: ``"auto"`` (the cached-text engine with a frozen model, else the naive full pass),
            ``"cached"`` or ``"naive"``; all give the same results up to float rounding.
        special_tokens: ``"tokenizer"`` (the tokenizer's special tokens) or ``"reference"`` (none, as
            the study's reference code; a model that needs its BOS keeps it).
        loss: ``"vocabulary"`` or ``"label-words"`` (:class:`TrainingLoss`).
        min_steps: at least this many optimizer steps: more epochs than ``epochs`` when a small sample
            gives few steps per epoch (0: ``epochs`` decides alone, as in the study).
        patience: stop a prompt once its validation loss has not improved for this many epochs; it keeps
            its best epoch (0: every prompt trains all its epochs, as in the study).
    """

    epochs: int = 20
    lr: float = 5e-3
    batch_size: int = 8
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    max_length: int = DEFAULT_MAX_LENGTH
    freeze_model: bool = True
    model_lr: float = DEFAULT_MODEL_LR
    eval_batch_size: int = 32
    engine: str = "auto"
    special_tokens: str = "tokenizer"
    loss: str = TrainingLoss.VOCABULARY.value
    min_steps: int = 0
    patience: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError("epochs", f"must be at least 1 (got {self.epochs})")
        if self.min_steps < 0:
            raise ConfigError("min_steps", f"must be 0 (off) or more (got {self.min_steps})")
        if self.patience < 0:
            raise ConfigError("patience", f"must be 0 (off) or more (got {self.patience})")
        self.loss = enum_value(TrainingLoss, "loss", self.loss).value
        if not (self.lr > 0):
            raise ConfigError("lr", f"must be positive (got {self.lr})")
        if not (self.model_lr > 0):
            raise ConfigError("model_lr", f"must be positive (got {self.model_lr})")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1 (got {self.batch_size})")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio", f"must be in [0, 1) (got {self.warmup_ratio})")
        self.readout.engine.for_training(not self.freeze_model)

    @property
    def readout(self) -> ReadoutConfig:
        """The read-out settings, checked there (kept as plain fields here: ``to_dict`` is what saved prompts hold)."""
        try:
            return ReadoutConfig(max_length=self.max_length, special_tokens=self.special_tokens,
                                 batch_size=self.eval_batch_size, engine=self.engine)
        except ConfigError as exc:
            if exc.field != "batch_size":
                raise
            # here batch_size is the training batch: the error names the field that was given
            raise ConfigError("eval_batch_size", exc.problem) from None

    def to_dict(self) -> dict:
        return asdict(self)

    def epochs_for(self, examples: int) -> int:
        """The epochs that training on ``examples`` runs: ``epochs``, or more to reach ``min_steps``."""
        steps_per_epoch = math.ceil(examples / self.batch_size)
        return max(self.epochs, math.ceil(self.min_steps / max(1, steps_per_epoch)))

    def steps_key(self, *, seed: bool = True) -> tuple:
        """What shapes the steps: the batches (with ``seed``, their order too), the epochs, the loss and the text
        encoding. Prompts on different samples train together when all but the seed agree."""
        keys = ("epochs", "min_steps", "loss", "batch_size", "max_length", "special_tokens", "eval_batch_size")
        return tuple(getattr(self, k) for k in keys) + ((self.seed,) if seed else ())

    def shares_steps_with(self, other: "TrainConfig") -> bool:
        """Whether two prompts can train in the same steps: equal :meth:`steps_key` and a frozen model."""
        return self.steps_key() == other.steps_key() and self.freeze_model and other.freeze_model


class TrainingDiverged(XlsptError):
    """The training loss or the prompt became NaN or infinite.

    ``best`` is the prompt of the best epoch before that (its weights restored), when one finished; ``kept``, where
    it is set, the classifier of that prompt (marked ``diverged`` in its sidecar), for its caller to save.
    """

    def __init__(self, message: str, best: "TrainResult | None" = None, kept: object | None = None):
        super().__init__(message)
        self.best = best
        self.kept = kept


@dataclass
class TrainResult:
    """The trained prompt (best epoch restored) and the loss curve."""

    prompt: SoftPrompt
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)
