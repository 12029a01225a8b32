"""One run's configuration: the object that the command line, a sweep spec and the Python API all build.

Field names are the sweep spec's keys and, with ``-`` for ``_``, the command line's flags
(``prompt_length`` is ``--prompt-length``). Each default is stated once, here or in the
lower-level config it feeds (:class:`~xlspt.soft_prompt.PromptConfig`, :class:`~xlspt.train.TrainConfig`,
:class:`~xlspt.engine.ReadoutConfig`, :class:`~xlspt.data.DataConfig`,
:class:`~xlspt.calibration.CalibrationConfig`).

A run config checks each field's type (a number written as a string, ``5e-3``, is a number),
then builds those lower-level configs once, each checking its own fields, and checks what
spans several of them. An error names the run config's field (``prompt_length``, not the
prompt config's ``length``).

A run's id is the hash of its canonical form (:meth:`RunConfig.canonical`): every field that
can change a result, with ``auto`` values resolved to what is actually used, and the data as
what it is (the checksum of the rows the run reads), never where it lies: the same data copied
to another folder, or read from the Hub, gives the same ids. Versions, the device and timings
go into the run's record instead.

Over 450 lines, on purpose: one config object (:class:`RunConfig`) states each field's default and help once, with
its checks beside its fields, as PEFT's configs do.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, TypeVar

from ..calibration import STANDARDIZE_ONLY, CalibrationConfig, Protocol
from ..classifiers import FitRequest, Method, classifier_class
from ..data.task import DataConfig
from ..engine.options import Engine, ReadoutConfig, SpecialTokens, enum_value
from ..errors import ConfigError
from ..lora import LoraConfig
from ..models.catalog import EMBEDDED_DEFAULT
from ..models.devices import DEFAULT_DTYPE, DType
from ..soft_prompt import PromptConfig
from ..train import TrainConfig, TrainingLoss

_PROMPT = PromptConfig()
_TRAIN = TrainConfig()
_READOUT = ReadoutConfig()
_DATA = DataConfig()
_CALIBRATION = CalibrationConfig()
_LORA = LoraConfig()
_Config = TypeVar("_Config")


#: The run-config fields of the lora method's adapters.
LORA_FIELDS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_lr", "lora_targets")

#: ``model_lr`` that means the prompt's rate (as the study's reference code used one rate for both).
REFERENCE_MODEL_LR = "reference"


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


def _lora_field(name: str):
    """A field that is :class:`~xlspt.lora.LoraConfig`'s (``lora_<name>``): its default and help, stated there."""
    lora = LoraConfig.__dataclass_fields__[name]
    return field(default=getattr(_LORA, name), metadata=_help(f"with method lora: {lora.metadata['help']}"))


def _readout_field(name: str):
    """A field that is :class:`ReadoutConfig`'s: its default and help, stated there."""
    return field(default=getattr(_READOUT, name), metadata=ReadoutConfig.__dataclass_fields__[name].metadata)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run: model, data, label words, prompt, training and target languages."""

    model: str = field(default=EMBEDDED_DEFAULT, metadata=_help(
        "gemma-3-270m (embedded), a Hub id such as facebook/xglm-564M, a local model directory or a .gguf file"))
    trust_remote_code: bool = field(default=False, metadata=_help(
        "run the Python code a Hub model repository ships (off: it would run with your permissions)"))
    dtype: DType = field(default=DEFAULT_DTYPE, metadata=_help(
        "model weights: auto = bfloat16 where a measured bf16 matmul is faster (a GPU, AMX or AVX-512 BF16 CPUs), else float32"))
    data: str | None = field(default=None, metadata=_help(
        "SIB-200 directory (<lang>/{train,dev,test}.tsv), a CSV/TSV/JSONL file or a directory of them, or "
        "hf:DATASET[:CONFIG]; default $XLSPT_DATA, else the Hub dataset Davlan/sib200"))
    text_column: str = field(default=_DATA.text_column, metadata=_help("the data's text column"))
    label_column: str = field(default=_DATA.label_column, metadata=_help("the data's label column (SIB-200's category is found too)"))
    language_column: str | None = field(default=_DATA.language_column, metadata=_help(
        "a column naming each row's language (default: a folder or file per language, else all rows are train_lang)"))
    split_column: str | None = field(default=_DATA.split_column, metadata=_help(
        "a column naming each row's split: train, dev (or validation), test (default: split files, else a seeded "
        "70/10/20 split stratified by label)"))
    train_lang: str = field(default=_DATA.language, metadata=_help("language of the training examples"))
    shots: int = field(default=8, metadata=_help("training examples per class (at most 58 for SIB-200)"))
    label_words: str | None = field(default=None, metadata=_help(
        "class=word pairs (geography=earth,sports=play), or one word per class in class order; several words for a "
        "class as word1|word2 (default: the model family's for SIB-200, else a single-token word made from each label)"))
    allow_subword_labels: bool = field(default=False, metadata=_help(
        "use the first token of a label word that is several tokens (as the reference code did)"))
    prompt_length: int = field(default=_PROMPT.length, metadata=_help("number of soft prompt vectors"))
    reparam_hidden: int = field(default=0, metadata=_help(
        "reparameterize the prompt with an MLP of this hidden size (0 = off; the reference example used 200)"))
    freeze: bool = field(default=_TRAIN.freeze_model, metadata=_help(
        "keep the model frozen and train the prompt only (the study's MF); --no-freeze trains the model too"))
    epochs: int = field(default=_TRAIN.epochs, metadata=_help("passes over the training examples"))
    min_steps: int = field(default=_TRAIN.min_steps, metadata=_help(
        "train for at least this many optimizer steps, adding epochs when the sample is small (0 = off: --epochs "
        "alone decides, as in the study)"))
    patience: int = field(default=_TRAIN.patience, metadata=_help(
        "stop a prompt (each ensemble member on its own) once its validation loss has not improved for this many "
        "epochs, keeping its best epoch (0 = off: every epoch runs, as in the study)"))
    loss: TrainingLoss = field(default=TrainingLoss(_TRAIN.loss), metadata=_help(
        "vocabulary: the label word's cross-entropy over the whole vocabulary (the study's); label-words: the "
        "cross-entropy over the classes, a softmax over their label words (what prediction reads)"))
    lr: float = field(default=_TRAIN.lr, metadata=_help("AdamW learning rate of the prompt"))
    model_lr: float | str = field(default=_TRAIN.model_lr, metadata=_help(
        "learning rate of the model's weights when it is not frozen, or 'reference' for the prompt's "
        "rate as the study's reference code used"))
    batch_size: int = field(default=_TRAIN.batch_size, metadata=_help("training examples per step"))
    seed: int = field(default=_TRAIN.seed, metadata=_help("seeds sampling, initialisation and shuffling"))
    max_length: int = _readout_field("max_length")
    special_tokens: SpecialTokens = _readout_field("special_tokens")
    engine: Engine = _readout_field("engine")
    langs: str | tuple[str, ...] = field(default="52", metadata=_help(
        "target languages: 52 (the study's; for data other than SIB-200: all of its languages), dev or held-out (SIB-200 "
        "languages outside the 52: `xlspt languages`), all, or codes such as eng_Latn,fra_Latn"))
    save_model: bool = field(default=False, metadata=_help(
        "with freeze off, also save the trained model weights (safetensors); by default only the prompt and metrics"))
    ensemble: int = field(default=1, metadata=_help(
        "train this many prompts (seeds seed, seed+1, ...) that vote with their mean class log-probabilities"))
    shared_sample: bool = field(default=False, metadata=_help(
        "ensemble members all train on the sample of --seed (default: each member draws its own)"))
    calibration: Protocol = field(default=_CALIBRATION.protocol, metadata=_help(
        "zero-shot (the study's: no correction); content-free (protocol a: the label prior of content-free inputs "
        "divided out, no target-language data); unlabeled (protocol b: each language's prior from its unlabeled dev "
        "texts); batch (protocol b: from the texts classified)"))

    standardize: bool = field(default=_CALIBRATION.standardize, metadata=_help(
        "with calibration unlabeled or batch: first move each read-out dimension to the training language's mean and "
        "spread, estimated per language on the same unlabeled texts"))

    prior: bool = field(default=_CALIBRATION.prior, metadata=_help(
        "with calibration: divide out the label prior it estimates; --no-prior goes with --standardize only (the "
        "standardized read-out alone)"))

    content_free_script: bool = field(default=_CALIBRATION.by_script, metadata=_help(
        "with calibration content-free: draw the random tokens from those written in the target language's script; "
        "--no-content-free-script draws them from the whole vocabulary"))

    limit: int = field(default=0, metadata=_help(
        "score only the first N texts of each target language's test split (0 = all): a quick look, recorded in the "
        "results"))

    method: Method = field(default=Method.PROMPT, metadata=_help(
        "prompt: a soft prompt (the study's method); probe: the baseline, a logistic regression on the frozen model's "
        "read-out state of text + EOS (no prompt), trained on the same examples; lora: a soft prompt trained with "
        "low-rank adapters on the frozen model (PEFT), one adapter per prompt"))
    lora_rank: int = _lora_field("rank")
    lora_alpha: float = _lora_field("alpha")
    lora_dropout: float = _lora_field("dropout")
    lora_lr: float = _lora_field("lr")
    lora_targets: str | None = field(default=None, metadata=_help(
        "with method lora: the linear layers that get adapters, comma-separated, such as q_proj,v_proj (default: the "
        "architecture's attention query and value)"))

    #: Fields added after run ids were first published: left out of the canonical form at their defaults.
    _LATER_FIELDS = ("ensemble", "shared_sample", "calibration", "standardize", "text_column", "label_column",
                     "language_column", "split_column", "method", "trust_remote_code", "min_steps", "loss", "patience", "prior", "limit",
                     "content_free_script", *LORA_FIELDS)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f, getattr(self, f.name)))
        self._check_own_fields()
        self._build_nested()
        self._check_combinations()
        # built after the combinations: its own standardize check says "protocol" where we say "calibration"
        object.__setattr__(self, "_calibration", _built(
            lambda: CalibrationConfig(protocol=self.calibration, standardize=self.standardize, prior=self.prior,
                                      by_script=self.content_free_script),
            {"protocol": "calibration"}))
        if isinstance(self.langs, str) and not self.langs.strip():
            raise ConfigError("langs", "is empty: use 52, dev, held-out, all, or codes such as eng_Latn,fra_Latn")

    def _check_own_fields(self) -> None:
        """The fields no lower-level config checks, or that mean more here (0, ``reference``)."""
        _check_range("shots", self.shots, 1)
        _check_range("limit", self.limit, 0)
        _check_range("reparam_hidden", self.reparam_hidden, 0)  # 0 = off: the prompt config's None
        _check_range("seed", self.seed, 0)  # seeds the sampling too, not only the training
        if self.model_lr != REFERENCE_MODEL_LR and not self.model_lr > 0:
            raise ConfigError("model_lr", f"must be positive or 'reference' (got {self.model_lr})")

    def _build_nested(self) -> None:
        """Build the lower-level configs once; each checks its own fields, its errors named by this config's names.

        ``data`` is resolved here (``$XLSPT_DATA`` when none is given), before any run id is computed.
        """
        prompt = _built(lambda: PromptConfig(length=self.prompt_length, reparam_hidden=self.reparam_hidden or None),
                        {"length": "prompt_length"})
        train = _built(lambda: TrainConfig(
            epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed, max_length=self.max_length,
            freeze_model=self.freeze, model_lr=self.lr if self.model_lr == REFERENCE_MODEL_LR else self.model_lr,
            engine=self.engine.value, special_tokens=self.special_tokens.value, loss=self.loss.value,
            min_steps=self.min_steps, patience=self.patience,
        ), {"freeze_model": "freeze"})
        readout = train.readout  # checked with the training config; evaluation reads texts the same way
        data = _built(lambda: DataConfig(
            source=self.data, text_column=self.text_column, label_column=self.label_column,
            language_column=self.language_column, split_column=self.split_column, language=self.train_lang,
        ).resolved(), {"source": "data", "language": "train_lang"})
        for name, value in (("_prompt", prompt), ("_train", train), ("_readout", readout), ("_data", data),
                            ("data", data.source)):
            object.__setattr__(self, name, value)

    def _check_combinations(self) -> None:
        """What spans several lower-level configs (or fields of this one)."""
        if self.max_length - self.prompt_length - 1 < 2:
            raise ConfigError(
                "prompt_length",
                f"{self.prompt_length} leaves no room for text within max_length {self.max_length}: "
                f"use a prompt length below {self.max_length - 2} or a larger max_length",
            )
        if self.save_model and self.freeze:
            raise ConfigError("save_model", "only applies with freeze off (a frozen model does not change)")
        _check_range("ensemble", self.ensemble, 1)
        if self.ensemble > 1 and not self.freeze:
            raise ConfigError("ensemble", "needs a frozen model (each member would train its own copy of the weights)")
        if not self.prior and not self.standardize:
            raise ConfigError("prior", "off corrects only with standardize: add standardize (calibration unlabeled or batch), or keep the prior")
        if self.standardize and not self.calibration.uses_target_text:
            raise ConfigError("standardize", f"needs unlabeled target text: use calibration unlabeled or batch (got {self.calibration.value})")
        if not self.content_free_script and self.calibration is not Protocol.CONTENT_FREE:
            raise ConfigError("content_free_script", f"says where content-free inputs come from: use calibration content-free, "
                                                     f"or leave it out (got {self.calibration.value})")
        lora = _built(self._lora_settings, {f: f"lora_{f}" for f in ("rank", "alpha", "dropout", "lr")}
                      | {"target_modules": "lora_targets"})
        if self.method is not Method.LORA:
            given = next((name for name in LORA_FIELDS if getattr(self, name) != _default_value(name)), None)
            if given:
                raise ConfigError(given, f"sets the adapters of method lora: add --method lora, or leave it out (method {self.method.value})")
            lora = None
        object.__setattr__(self, "_lora", lora)
        if self.method is Method.LORA and self.engine is Engine.CACHED:
            raise ConfigError("engine", "cached reads the text once for a model that does not change, and the adapters of "
                                        "method lora train: use engine naive or auto")
        classifier_class(self.method).check_request(FitRequest(
            ensemble=self.ensemble, calibration=CalibrationConfig(protocol=self.calibration), training=self._train,
            lora=lora))

    def _lora_settings(self) -> LoraConfig:
        targets = tuple(t.strip() for t in self.lora_targets.split(",") if t.strip()) if self.lora_targets is not None else None
        return LoraConfig(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout, lr=self.lora_lr,
                          target_modules=targets)

    # ------------------------------------------------------------ building

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "config") -> "RunConfig":
        """Build from a mapping of field names; an unknown name is refused with the nearest known one."""
        unknown = [k for k in values if k not in cls.field_names()]
        if unknown:
            raise ConfigError(unknown[0], f"unknown key in {where}{_suggest(unknown[0], cls.field_names())}")
        return cls(**dict(values))

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ what it means

    def prompt_config(self) -> PromptConfig:
        return copy.copy(self._prompt)

    def train_config(self) -> TrainConfig:
        return copy.copy(self._train)

    def readout_config(self) -> ReadoutConfig:
        return self._readout

    def data_config(self) -> DataConfig:
        """Where the data comes from, ``$XLSPT_DATA`` already resolved."""
        return self._data

    def calibration_config(self) -> CalibrationConfig:
        return self._calibration

    def lora_config(self) -> LoraConfig | None:
        """The adapters trained with each prompt (method lora), else ``None``."""
        return self._lora

    def member_seeds(self) -> list[int]:
        """The seeds of the ensemble's members (one for a single prompt)."""
        return list(range(self.seed, self.seed + self.ensemble))

    def label_word_map(self, labels: tuple[str, ...] | None = None) -> dict[str, str] | None:
        """The label words given, for the classes ``labels`` (default: SIB-200's seven)."""
        from ..data.sib200 import CATEGORIES
        from ..verbalizer import parse_label_words

        return parse_label_words(self.label_words, tuple(labels or CATEGORIES)) if self.label_words else None

    def resolved_dtype(self, device: str | None = None) -> str:
        from ..models.devices import resolve_device, resolve_dtype

        return str(resolve_dtype(self.dtype.value, resolve_device(device))).removeprefix("torch.")

    def resolved_engine(self) -> str:
        """The engine training runs: weights that train (the model's, or adapters on it) change the text's states."""
        return self.engine.for_training(not self.freeze or self.method is Method.LORA).value

    def canonical(self, *, dtype: str | None = None, languages: list[str] | None = None,
                  data_checksum: str | None = None) -> dict:
        """The fields that can change a result, JSON-ready, with ``auto`` values resolved.

        Args:
            dtype: the dtype actually used (default: what ``auto`` resolves to on this machine).
            languages: the target languages ``langs`` resolved to (default: ``langs`` as written).
            data_checksum: the checksum of the rows the run reads
                (:meth:`~xlspt.data.TaskData.checksum`), which stands for the data in the canonical form
                (default: the data source as written, which is not an id: only for display).
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, Enum) else value
        out["dtype"] = dtype or self.resolved_dtype()
        out["engine"] = self.resolved_engine()
        langs = languages if languages is not None else self.langs
        out["langs"] = list(langs) if not isinstance(langs, str) else langs
        if data_checksum is not None:  # what the data is, never where it lies
            out["data"] = DATA_CHECKSUM_PREFIX + data_checksum
        if self.freeze:
            out["model_lr"] = None  # unused with a frozen model: two runs that differ only here are one run
        for name in self._LATER_FIELDS:  # earlier run ids stay valid
            if out[name] == _default_value(name):
                del out[name]
        if self.ensemble == 1:
            out.pop("shared_sample", None)
        return out

    @classmethod
    def omitted_value(cls, name: str):
        """What a canonical config that lacks ``name`` means: a later field's default, else ``None``."""
        return _default_value(name) if name in cls._LATER_FIELDS else None

    def run_id(self, *, data_checksum: str, **resolved) -> str:
        """16 hex digits of the SHA-256 of :meth:`canonical` (``data_checksum`` is required: ids name data by content)."""
        return canonical_run_id(self.canonical(data_checksum=data_checksum, **resolved))

    def short_name(self) -> str:
        """A readable label for tables and progress bars."""
        parts = [f"len{self.prompt_length}", f"{self.shots}shot", f"seed{self.seed}"]
        if self.reparam_hidden:
            parts.insert(1, f"reparam{self.reparam_hidden}")
        if not self.freeze:
            parts.insert(0, "noMF")
        if self.ensemble > 1:
            parts.append(f"ens{self.ensemble}" + ("shared" if self.shared_sample else ""))
        if self.min_steps:
            parts.append(f"min{self.min_steps}steps")
        if self.patience:
            parts.append(f"patience{self.patience}")
        if self.loss is not TrainingLoss.VOCABULARY:
            parts.append(f"{self.loss.value}-loss")
        if self.calibration != Protocol.ZERO_SHOT:
            parts.append(self.calibration.value + ("+standardize" if self.standardize else "")
                         + ("" if self.prior else STANDARDIZE_ONLY) + ("" if self.content_free_script else "-anyscript"))
        if self.method is Method.PROBE:
            parts = ["probe", f"{self.shots}shot", f"seed{self.seed}"]
        if self.method is Method.LORA:
            parts.insert(0, f"lora{self.lora_rank}")
        return "-".join(parts)


#: How a canonical form's ``data`` names the data: this prefix and the checksum of the rows read.
DATA_CHECKSUM_PREFIX = "sha256:"


def canonical_run_id(canonical: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of a canonical form (:meth:`RunConfig.canonical`, or a record's ``config``)."""
    text = json.dumps(dict(canonical), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Closed choices among the fields: those typed with a string enum.
ENUM_FIELDS = {name: kind for name, kind in typing.get_type_hints(RunConfig).items()
               if isinstance(kind, type) and issubclass(kind, Enum)}


# ---------------------------------------------------------------- validation helpers


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Check ``value``'s type for field ``f`` (YAML and JSON give ints for floats, strings for enums and,
    YAML 1.1 for ``5e-3``, strings for numbers)."""
    name, kind = f.name, f.type
    if name in ENUM_FIELDS:
        return enum_value(ENUM_FIELDS[name], name, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false (got {value!r})")
        return value
    if kind == "int":
        return _number(name, value, int, "must be a whole number")
    if kind == "float":
        return _number(name, value, float, "must be a number")
    if name == "model_lr":
        return value if value == REFERENCE_MODEL_LR else _number(name, value, float, "must be a number or 'reference'")
    if name == "langs":
        if isinstance(value, (list, tuple)):
            if not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(name, "must be a non-empty list of language codes")
            return tuple(v.strip() for v in value)
        if not isinstance(value, str):
            raise ConfigError(name, f"must be 52, all, or language codes (got {value!r})")
        return value
    if kind in ("str", "str | None"):
        if value is None and kind == "str | None":
            return None
        if name == "label_words" and isinstance(value, Mapping):
            return ",".join(f"{k}={v}" for k, v in value.items())
        if not isinstance(value, str) or not value:
            raise ConfigError(name, f"must be a non-empty string (got {value!r})")
        return value
    return value


def _number(name: str, value: Any, kind: type, problem: str) -> int | float:
    """``value`` as a ``kind`` (int or float): a number of that kind (an int is a float too) or a string that
    parses as one; never a boolean."""
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    elif not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int):
        return kind(value)
    raise ConfigError(name, f"{problem} (got {value!r})")


def _built(make: Callable[[], _Config], renamed: Mapping[str, str] | None = None) -> _Config:
    """``make()``; its :class:`ConfigError` names the run config's field where the lower-level name differs."""
    try:
        return make()
    except ConfigError as exc:
        if exc.field not in (renamed or {}):
            raise
        raise ConfigError(renamed[exc.field], exc.problem) from exc


def _default_value(name: str):
    value = RunConfig.__dataclass_fields__[name].default
    return value.value if isinstance(value, Enum) else value


def _check_range(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum} (got {value})")


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {match[0]}?)" if match else f"; known keys: {', '.join(known)}"
