"""From label-word logits to class scores: prompt ensembles and the calibration protocols.

A language the prompt was not trained on often collapses onto one or two labels: the prompt
carries the topic, but each language shifts the label prior. Two kinds of correction, each
tied to what it may look at (design.md, section 7), and every result says which produced it:

- ``zero-shot`` (the study's protocol): nothing is corrected.
- ``content-free`` (protocol a, no target-language data): the label prior the prompt gives to
  content-free inputs (an empty text, placeholders, random token sequences) is divided out
  (Zhao et al. 2021, "Calibrate before use").
- ``unlabeled`` and ``batch`` (protocol b, unlabeled target-language text): each language's
  label prior is estimated from its own unlabeled sentences, a separate sample (``unlabeled``)
  or the texts being classified (``batch``), and divided out (batch calibration, Zhou et al.
  2024). With ``standardize`` the read-out states are first moved, dimension by dimension, to
  the training language's mean and spread, estimated on the same unlabeled sentences; with
  ``prior`` off the standardized read-out is scored as it is (``+standardize-only``).

An ensemble averages its members' (calibrated) class log-probabilities.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from enum import Enum

import torch

from .errors import ConfigError, XlsptError


class Protocol(str, Enum):
    """What a result was allowed to see beyond the English training data."""

    ZERO_SHOT = "zero-shot"
    CONTENT_FREE = "content-free"
    UNLABELED = "unlabeled"
    BATCH = "batch"

    @property
    def family(self) -> str:
        """``study``, ``a`` (no target-language data) or ``b`` (unlabeled target-language text)."""
        return {"zero-shot": "study", "content-free": "a", "unlabeled": "b", "batch": "b"}[self.value]

    @property
    def uses_target_text(self) -> bool:
        return self.family == "b"


@dataclass(frozen=True)
class CalibrationConfig:
    """How class scores are corrected; the default is the study's uncorrected zero-shot read-out.

    Each field's ``help`` says what it means; ``protocol`` is a :class:`Protocol` (its value or the member).
    """

    protocol: Protocol = field(default=Protocol.ZERO_SHOT, metadata={"help": "what the correction may look at: see Protocol"})
    standardize: bool = field(default=False, metadata={"help": (
        "move each read-out dimension to the training language's mean and spread, estimated per language on "
        "unlabeled text (protocol b only)")})
    prior: bool = field(default=True, metadata={"help": (
        "divide out the label prior the protocol estimates; false goes with standardize only: the standardized "
        "read-out alone (protocol b)")})
    unlabeled_split: str = field(default="dev", metadata={"help": (
        "for unlabeled on a labelled dataset: the split whose texts (labels unused) estimate each language's prior; "
        "never the split being scored")})
    min_batch: int = field(default=32, metadata={"help": "batch refuses fewer texts than this (a prior needs sentences to average)"})
    content_free_texts: int = field(default=32, metadata={"help": "how many random token sequences content-free adds to its placeholders"})
    by_script: bool = field(default=True, metadata={"help": (
        "content-free draws its random tokens from those written in the target language's script (named by its "
        "code, ory_Orya: no text of the language is read), where the language is known")})

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", Protocol(self.protocol))
        if self.standardize and not self.protocol.uses_target_text:
            raise ConfigError("standardize", f"needs unlabeled target text: use protocol unlabeled or batch (got {self.protocol.value})")
        if not self.prior and not self.standardize:
            raise ConfigError("prior", "false corrects only with standardize: add standardize, or keep the prior")
        if self.min_batch < 2:
            raise ConfigError("min_batch", f"must be at least 2 (got {self.min_batch})")

    def check_inputs(self, texts: int | None, unlabeled: int, has_reference: bool) -> None:
        """Refuse what this calibration cannot correct with (:class:`~xlspt.errors.XlsptError`): the one place every
        scoring path checks it. ``texts``: how many texts are scored together (``None``: not known yet, as when
        predictions stream); ``unlabeled``: how many unlabeled texts of the language came with them;
        ``has_reference``: whether the training language's read-out statistics are known."""
        if self.protocol is Protocol.UNLABELED and not unlabeled:
            raise XlsptError(f"calibration {self.name} needs unlabeled texts of the language: give --unlabeled FILE "
                             "(one text a line), or send some in 'unlabeled' (with 'lang') to a server; or use batch")
        if self.protocol is Protocol.BATCH and texts is not None and texts < self.min_batch:
            raise XlsptError(
                f"calibration 'batch' estimates the label prior from the texts classified, and {texts} "
                f"are too few (at least {self.min_batch}): classify more texts at once or use content-free")
        if self.standardize and not has_reference:
            raise XlsptError("standardize needs the training language's read-out statistics, which this prompt was not "
                             "saved with: evaluate with the data the prompt was trained on (or train it with "
                             "--standardize), or calibrate without standardize")

    @property
    def name(self) -> str:
        """A short label for tables: ``zero-shot``, ``a:content-free``, ``b:unlabeled(dev)+standardize``."""
        if self.protocol is Protocol.ZERO_SHOT:
            return "zero-shot"
        name = f"{self.protocol.family}:{self.protocol.value}"
        if self.protocol is Protocol.CONTENT_FREE and self.by_script:
            name += "(script)"
        if self.protocol is Protocol.UNLABELED:
            name += f"({self.unlabeled_split})"
        return name + ("+standardize" if self.standardize else "") + ("" if self.prior else STANDARDIZE_ONLY)

    def to_dict(self) -> dict:
        values = {**asdict(self), "protocol": self.protocol.value, "family": self.protocol.family, "name": self.name}
        if self.prior:  # absent at its default: sidecars written before the field existed read the same
            del values["prior"]
        return values

    @classmethod
    def from_name(cls, name: str) -> "CalibrationConfig":
        """Back from :attr:`name` (a results table's ``protocol`` column); refuses a name it did not make."""
        match = _NAME.fullmatch(str(name))
        if match is None:
            raise ValueError(f"{name!r} is not a calibration protocol's name")
        if match["protocol"] is None:
            return cls()
        detail = match["detail"]
        return cls(Protocol(match["protocol"]), standardize=bool(match["standardize"]), prior=not match["only"],
                   by_script=detail == "script", **({"unlabeled_split": detail} if detail and detail != "script" else {}))

    def describe(self, name: str | None = None) -> str:
        """:attr:`name` (or the ``name`` it was read from) with what the protocol was allowed to see, for the
        header of a results table."""
        if self.protocol is Protocol.ZERO_SHOT:
            return "zero-shot (the study's: English training data only, no correction)"
        family = self.protocol.family
        what = {"a": "no target-language data", "b": "unlabeled target-language text, transductive"}[family]
        return f"{name or self.name} (protocol {family}: {what}; not comparable with zero-shot numbers)"

    @classmethod
    def from_dict(cls, values: dict | None) -> "CalibrationConfig":
        """Back from :meth:`to_dict` (a sidecar's ``calibration``); ``None``: the default."""
        if not values:
            return cls()
        return cls(**{k: v for k, v in values.items() if k in {f.name for f in fields(cls)}})


#: How a name marks standardization without the prior: ``b:unlabeled(dev)+standardize-only``.
STANDARDIZE_ONLY = "-only"
#: What :attr:`CalibrationConfig.name` writes: ``zero-shot``, ``a:content-free(script)``, ``b:unlabeled(dev)+standardize``.
_NAME = re.compile(r"zero-shot|(?:a|b):(?P<protocol>" + "|".join(re.escape(p.value) for p in Protocol if p is not Protocol.ZERO_SHOT)
                   + r")(?:\((?P<detail>[^)]*)\))?(?P<standardize>\+standardize(?P<only>" + re.escape(STANDARDIZE_ONLY) + r")?)?")


#: How the protocol of prompts self-trained on target-language text is marked (they are protocol b whatever
#: their calibration): ``b:unlabeled(dev)+self-trained``, or ``b:self-trained`` for an uncalibrated one.
SELF_TRAINED = "+self-trained"


def self_trained_protocol(name: str) -> str:
    """The protocol name of self-trained prompts scored with the calibration called ``name``."""
    return "b:self-trained" if name == "zero-shot" else f"{name}{SELF_TRAINED}"


def describe_protocol(name: str) -> str:
    """A results table's ``protocol`` (a :attr:`CalibrationConfig.name`) as a line a reader understands."""
    if str(name) == "b:self-trained" or str(name).endswith(SELF_TRAINED):
        calibration = str(name).removesuffix(SELF_TRAINED)
        how = "" if calibration == "b:self-trained" else f", calibrated {calibration}"
        return (f"{name} (protocol b: prompts self-trained on unlabeled target-language text{how}; not comparable "
                "with zero-shot numbers)")
    try:
        return CalibrationConfig.from_name(name).describe(name)
    except (ValueError, ConfigError):  # a name this version did not write: say it as it is
        return str(name)


PLACEHOLDERS = ("", "N/A", "[MASK]", "...", "?")

#: ISO 15924 codes (the ``_Latn`` of ``fra_Latn``) -> Unicode script names, for script-aware content-free inputs.
UNICODE_SCRIPTS = {
    "Latn": ("Latin",), "Cyrl": ("Cyrillic",), "Grek": ("Greek",), "Arab": ("Arabic",), "Hebr": ("Hebrew",),
    "Hans": ("Han",), "Hant": ("Han",), "Jpan": ("Han", "Hiragana", "Katakana"), "Hang": ("Hangul",),
    "Thai": ("Thai",), "Laoo": ("Lao",), "Khmr": ("Khmer",), "Mymr": ("Myanmar",), "Tibt": ("Tibetan",),
    "Deva": ("Devanagari",), "Beng": ("Bengali",), "Guru": ("Gurmukhi",), "Gujr": ("Gujarati",),
    "Orya": ("Oriya",), "Taml": ("Tamil",), "Telu": ("Telugu",), "Knda": ("Kannada",), "Mlym": ("Malayalam",),
    "Sinh": ("Sinhala",), "Ethi": ("Ethiopic",), "Geor": ("Georgian",), "Armn": ("Armenian",),
    "Tfng": ("Tifinagh",), "Olck": ("Ol_Chiki",), "Tale": ("Tai_Le",),
}


def script_of(language: str) -> str | None:
    """``fra_Latn`` -> ``Latn``; ``None`` when the code names no known script."""
    script = language.rsplit("_", 1)[-1] if "_" in language else None
    return script if script in UNICODE_SCRIPTS else None


def script_token_ids(tokenizer, script: str) -> list[int]:
    """Vocabulary ids whose token is written in ``script`` only (letters and combining marks)."""
    import regex

    alternatives = "|".join(rf"\p{{Script={name}}}" for name in UNICODE_SCRIPTS[script])
    # the script's letters and marks, and marks shared by all scripts; at least one of the script's own
    pattern = regex.compile(rf"^[\s▁Ġ]?(?=.*(?:{alternatives}))(?:{alternatives}|\p{{Script=Inherited}})+$")
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [i for i, piece in enumerate(pieces) if i not in special and piece and pattern.match(piece)]


def content_free_texts(tokenizer, count: int, seed: int = 0, length: int = 24, script: str | None = None) -> list[str]:
    """Placeholders and ``count`` strings of random vocabulary tokens: inputs with no content in any language.

    With ``script`` (ISO 15924, e.g. ``Orya``) the random tokens are drawn from those written in that
    script: still no text of any language, but the script the target language is written in (its
    code is all that is used).
    """
    generator = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    pool = torch.tensor(script_token_ids(tokenizer, script)) if script else None
    if pool is not None and len(pool) < 2 * length:
        pool = None  # a script the vocabulary barely covers: random tokens of any script
    texts = list(PLACEHOLDERS)
    while len(texts) < len(PLACEHOLDERS) + count:
        if pool is None:
            ids = torch.randint(0, len(tokenizer), (length,), generator=generator).tolist()
        else:
            ids = pool[torch.randint(0, len(pool), (length,), generator=generator)].tolist()
        text = tokenizer.decode([i for i in ids if i not in special], skip_special_tokens=True).strip()
        if text:
            texts.append(text)
    return texts


def log_probs(class_logits: torch.Tensor) -> torch.Tensor:
    """``[..., C]`` class logits -> class log-probabilities (over the label set)."""
    return torch.log_softmax(class_logits.float(), dim=-1)


def log_prior(class_log_probs: torch.Tensor) -> torch.Tensor:
    """``[P, M, C]`` log-probabilities on ``M`` calibration inputs -> ``[P, C]`` log of the mean probability."""
    return torch.logsumexp(class_log_probs, dim=-2) - math.log(class_log_probs.shape[-2])


def combine(class_log_probs: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """``[P, N, C]`` members' log-probabilities (and their ``[P, C]`` log priors) -> ``[N, C]`` ensemble log-probabilities.

    Each member's prior is divided out and its scores renormalised; the members' log-probabilities
    are then averaged and renormalised (a normalised geometric mean of the members' distributions).
    """
    scores = class_log_probs if prior is None else torch.log_softmax(class_log_probs - prior[:, None, :], dim=-1)
    return torch.log_softmax(scores.mean(dim=0), dim=-1)


@dataclass
class StateStatistics:
    """Per-member mean and spread of read-out states ``[P, d]``, estimated on unlabeled text."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, states: torch.Tensor, eps: float = 1e-6) -> "StateStatistics":
        """``[P, M, d]`` states of ``M`` texts."""
        return cls(states.float().mean(dim=1), states.float().std(dim=1).clamp_min(eps))

    def standardize_to(self, states: torch.Tensor, reference: "StateStatistics") -> torch.Tensor:
        """``[P, N, d]`` states of this language, moved to ``reference``'s mean and spread per dimension."""
        return (states.float() - self.mean[:, None]) / self.std[:, None] * reference.std[:, None] + reference.mean[:, None]
