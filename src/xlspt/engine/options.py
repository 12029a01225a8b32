"""The read-out's closed choices and settings: how text is tokenized, which pass runs, what fits.

Each is a string enum (its value is what specs, flags and sidecars hold) and each default is
stated once, in :class:`ReadoutConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..errors import ConfigError

#: The study truncates text so that text + prompt + EOS fit 128 tokens.
DEFAULT_MAX_LENGTH = 128


class Engine(str, Enum):
    """The forward pass: ``cached`` text states (frozen model), ``naive`` full pass, ``auto`` picks."""

    AUTO = "auto"
    CACHED = "cached"
    NAIVE = "naive"

    def for_training(self, model_trains: bool) -> "Engine":
        """What trains: ``auto`` is the cached engine unless the model's weights train (their text states change)."""
        if self is Engine.AUTO:
            return Engine.NAIVE if model_trains else Engine.CACHED
        if self is Engine.CACHED and model_trains:
            raise ConfigError("engine", "cached needs a frozen model: use engine naive or auto with freeze off")
        return self

    def for_scoring(self, prompts: int, stored: bool = False) -> "Engine":
        """What scores ``prompts`` prompts: ``auto`` is one full pass for one prompt (the least work when the
        text's states are not kept), else the cached engine (the text once for all prompts)."""
        if self is Engine.AUTO:
            return Engine.NAIVE if prompts == 1 and not stored else Engine.CACHED
        return self


class SpecialTokens(str, Enum):
    """How text is tokenized: ``tokenizer`` adds the tokenizer's own special tokens (XGLM's leading
    ``</s>``); ``reference`` adds none, as the study's reference code did (Gemma keeps the BOS it needs)."""

    TOKENIZER = "tokenizer"
    REFERENCE = "reference"


def enum_value(enum: type[Enum], name: str, value) -> Enum:
    """``value`` as a member of ``enum``, or a :class:`ConfigError` naming the field ``name`` and the choices."""
    try:
        return enum(value.value if isinstance(value, Enum) else value)
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise ConfigError(name, f"must be one of {choices} (got {value!r})") from None


@dataclass(frozen=True)
class ReadoutConfig:
    """How texts are read: truncation, tokenization, batching and the pass. Shared by training,
    evaluation and prediction, and saved with every artifact.

    Args:
        max_length: text + prompt + EOS tokens; the text is truncated, never the prompt.
        special_tokens: see :class:`SpecialTokens`.
        batch_size: texts per evaluation pass.
        engine: see :class:`Engine`.
    """

    max_length: int = field(default=DEFAULT_MAX_LENGTH, metadata={"help": "text + prompt + EOS tokens; the text is truncated, never the prompt"})
    special_tokens: SpecialTokens = field(default=SpecialTokens.TOKENIZER, metadata={"help": (
        "tokenizer: the tokenizer's special tokens (XGLM starts with </s>); reference: none, as the study's code")})
    batch_size: int = field(default=32, metadata={"help": "texts per evaluation pass"})
    engine: Engine = field(default=Engine.AUTO, metadata={"help": (
        "auto/cached: text states computed once, steps run the prompt positions only; naive: the full pass")})

    def __post_init__(self) -> None:
        object.__setattr__(self, "special_tokens", enum_value(SpecialTokens, "special_tokens", self.special_tokens))
        object.__setattr__(self, "engine", enum_value(Engine, "engine", self.engine))
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 8:
            raise ConfigError("max_length", f"must be at least 8 (got {self.max_length})")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1 (got {self.batch_size})")

    def to_dict(self) -> dict:
        return {"max_length": self.max_length, "special_tokens": self.special_tokens.value,
                "batch_size": self.batch_size, "engine": self.engine.value}
