"""Typed sidecars: the JSON beside every artifact's tensors, as a serialized typed config.

PEFT's ``PeftConfigMixin`` is the pattern: a dataclass per artifact kind, ``to_dict`` to write
it and ``from_dict`` to read it back, one schema for the fields every artifact has
(:class:`Sidecar`: method, model and its shape signature, dtype, labels, read-out settings,
training sample, versions, the format version and the SHA-256 of the weights file) and each
method's own fields on top (:class:`PromptSidecar`, :class:`ProbeSidecar`).

Format versions (``MAJOR.MINOR``): 1.1 added ensembles; 1.2 the prompt file's checksum and the
label set; 1.3 the ``method`` and ``readout`` entries, and probe sidecars versioned and
checksummed like prompts; 1.4 the sample's ``checksum`` of the data, and its ``source`` as what the data
is (a Hub dataset id, SIB-200, a file or folder's name), no longer a local path. Every earlier sidecar
still loads: what it lacks is read where that version kept it (a prompt's read-out settings under
``train_config``, a probe's at the top); :func:`shareable` cleans the paths it may hold before it is shared.
A newer MAJOR version is refused; a newer MINOR version's unknown entries are ignored with a warning.

Over 450 lines, on purpose: the sidecars of every method share their common fields, reading, format checks and
checksums, which must change together.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ._version import __version__
from .calibration import CalibrationConfig
from .engine.options import ReadoutConfig
from .errors import ConfigError, XlsptError
from .files import write_json_atomic
from .layout import ADAPTER_FILE, LORA_SIDECAR, PROBE_FILE, PROBE_SIDECAR, PROMPT_FILE, PROMPT_SIDECAR
from .soft_prompt import PromptConfig
from .results.summary import Header
from .train import TrainConfig

FORMAT_VERSION = "1.4"


class FormatWarning(Warning):
    """A sidecar from a newer minor format version: what this version does not know is ignored."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Sample:
    """The few-shot sample an artifact was fitted on (the sidecar's ``data`` entry).

    ``source`` is what the data is (:attr:`~xlspt.data.TaskData.source_name`), never where it sits on this
    machine; ``checksum`` is the SHA-256 of the training language's train and dev rows the sample was
    drawn from (:meth:`~xlspt.data.TaskData.checksum`): two artifacts with the same checksum saw the same data.
    """

    source: str = ""
    checksum: str | None = None
    train_language: str = "eng_Latn"
    shots_per_class: int | None = None
    sampling_seed: int | None = None
    train_index_ids: list[int] = field(default_factory=list)
    validation_index_ids: list[int] = field(default_factory=list)
    validation_per_class: int | None = None  # prompts only; earlier probe sidecars never had it

    _ORDER: ClassVar[tuple[str, ...]] = ("source", "checksum", "train_language", "shots_per_class",
                                         "validation_per_class", "sampling_seed", "train_index_ids", "validation_index_ids")
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("checksum", "validation_per_class")  # absent from earlier sidecars

    @classmethod
    def drawn_from(cls, data, train_language: str, **fields) -> "Sample":
        """The sample of ``train_language`` drawn from ``data`` (a :class:`~xlspt.data.TaskData`); ``fields``:
        the rest of the sample (shots, seed, index ids)."""
        checksum = data.checksum([(train_language, "train"), (train_language, "dev")])  # reads: source_name needs it
        return cls(source=data.source_name, checksum=checksum, train_language=train_language, **fields)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {k: values[k] for k in self._ORDER if not (k in self._OPTIONAL and values[k] is None)}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Sample | None":
        if not isinstance(values, dict):
            return None
        return cls(**{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(cls)}})


@dataclass
class Training:
    """One trained prompt's own entries: its configs, sample and curve (each ensemble member has its own)."""

    prompt_config: PromptConfig
    train_config: TrainConfig
    data: Sample | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    history: list[dict] = field(default_factory=list)
    train_seconds: float | None = None
    created: str | None = None

    @property
    def still_improving(self) -> bool:
        """Whether the validation loss was still falling at the last epoch: more steps might have helped."""
        return len(self.history) > 1 and self.best_epoch == self.history[-1].get("epoch")

    def to_dict(self) -> dict:
        out = {"prompt_config": self.prompt_config.to_dict(), "train_config": self.train_config.to_dict()}
        if self.data is not None:
            out["data"] = self.data.to_dict()
        out.update(best_epoch=self.best_epoch, best_val_loss=self.best_val_loss, history=self.history,
                   train_seconds=self.train_seconds)
        if self.created is not None:
            out["created"] = self.created
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "Training":
        return cls(prompt_config=_config(PromptConfig, values.get("prompt_config")),
                   train_config=_config(TrainConfig, values.get("train_config")),
                   data=Sample.from_dict(values.get("data")), best_epoch=values.get("best_epoch"),
                   best_val_loss=values.get("best_val_loss"), history=list(values.get("history") or []),
                   train_seconds=values.get("train_seconds"), created=values.get("created"))


def _config(kind, values: dict | None):
    """A config dataclass from a sidecar's dict: keys this version does not know are dropped."""
    names = {f.name for f in dataclasses.fields(kind)}
    try:
        return kind(**{k: v for k, v in (values or {}).items() if k in names})
    except (ConfigError, TypeError, ValueError) as exc:
        raise XlsptError(f"the sidecar's {kind.__name__} is not valid ({exc}): save the artifact again") from None


@dataclass
class Sidecar:
    """The fields every artifact's sidecar has; subclasses add a method's own.

    ``sha256`` is the checksum of the weights file, written under :attr:`checksum_key`.
    """

    method: ClassVar[str] = ""
    weights_file: ClassVar[str] = ""
    sidecar_file: ClassVar[str] = ""
    checksum_key: ClassVar[str] = ""
    required: ClassVar[tuple[str, ...]] = ("model",)  # entries a sidecar of this kind cannot lack

    model: str = ""
    model_signature: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    dtype: str = "float32"
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    data: Sample | None = None
    train_seconds: float | None = None
    created: str = field(default_factory=now)
    xlspt_version: str = __version__
    sha256: str | None = None
    format_version: str = FORMAT_VERSION

    _KINDS: ClassVar[dict[str, type["Sidecar"]]] = {}

    @classmethod
    def artifact_files(cls) -> tuple[str, ...]:
        """Every file the artifact is saved as (its weights files and the sidecar): what a folder keeps of it."""
        return (cls.weights_file, cls.sidecar_file)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.method:
            Sidecar._KINDS[cls.method] = cls

    # ------------------------------------------------------------ writing

    def common_dict(self) -> dict:
        """The shared schema's entries, in the order a reader meets them."""
        return {"format_version": FORMAT_VERSION, self.checksum_key: self.sha256, "method": self.method,
                "xlspt_version": self.xlspt_version, "model": self.model, "model_signature": self.model_signature,
                "labels": list(self.labels), "dtype": self.dtype,
                "readout": {"max_length": self.readout.max_length, "special_tokens": self.readout.special_tokens.value}}

    def to_dict(self) -> dict:
        raise NotImplementedError

    def summary_header(self) -> Header:
        """What the summary of this artifact's results says about it."""
        raise NotImplementedError

    def _training_line(self, best_epoch, seed) -> str:
        sample = self.data or Sample(train_language=None)
        return f"training: {sample.shots_per_class} shots/class of {sample.train_language}, best epoch {best_epoch}, seed {seed}"

    def write(self, directory: Path) -> Path:
        """Write the sidecar beside the weights file in ``directory`` (whose checksum it records)."""
        self.sha256 = sha256_file(directory / self.weights_file)
        self.format_version = FORMAT_VERSION
        write_json_atomic(directory / self.sidecar_file, self.to_dict())
        return directory / self.sidecar_file

    # ------------------------------------------------------------ reading

    @staticmethod
    def kind_of(directory: Path) -> type["Sidecar"] | None:
        """The sidecar kind saved in ``directory`` (by which sidecar file it holds), or ``None``."""
        for kind in Sidecar._KINDS.values():
            if (directory / kind.sidecar_file).is_file():
                return kind
        return None

    @classmethod
    def read(cls, path: Path) -> "Sidecar":
        """Read and check the sidecar at ``path`` (format version, required entries)."""
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise XlsptError(f"{path} cannot be read ({exc.__class__.__name__}): re-train or restore it") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise XlsptError(f"{path} is not valid JSON ({exc}): re-train or restore it") from None
        if not isinstance(values, dict):
            raise XlsptError(f"{path} is not a JSON object: it is not an xlspt {cls.method} sidecar")
        check_format(values, path, cls.known_keys(), cls.method)
        missing = [k for k in cls.required if k not in values]
        if missing:
            raise XlsptError(f"{path} lacks {missing[0]!r}: it is not an xlspt {cls.method} sidecar")
        try:
            return cls.from_dict(values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise XlsptError(f"{path} does not describe an xlspt {cls.method} ({exc.__class__.__name__}: {exc}): "
                             "re-train or restore it") from None

    def checked_path(self, directory: Path, name: str, recorded: str | None) -> Path:
        """``directory / name``, refused when it is missing or changed since the sidecar recorded its checksum
        ``recorded``."""
        if not (directory / name).is_file():
            raise XlsptError(f"{directory / name} is missing: keep the files of a saved {self.method} together "
                             f"({', '.join(self.artifact_files())})")
        if recorded is not None and recorded != sha256_file(directory / name):
            raise XlsptError(f"{directory / name} does not match the checksum in {self.sidecar_file} (changed or "
                             "damaged since it was saved): restore the files together, or train it again")
        return directory / name

    def check_weights(self, directory: Path) -> None:
        """Refuse weights that changed since the sidecar was written (sidecars before 1.2 hold no checksum)."""
        if self.sha256 is not None and self.sha256 != sha256_file(directory / self.weights_file):
            raise XlsptError(f"{directory / self.weights_file} does not match the checksum in {self.sidecar_file} (changed "
                             "or damaged since it was saved): restore the pair, or train it again")

    @classmethod
    def known_keys(cls) -> set[str]:
        return {"format_version", cls.checksum_key, "method", "xlspt_version", "created", "model", "model_signature",
                "labels", "dtype", "readout", "data", "train_seconds"}

    @classmethod
    def common_fields(cls, values: dict, readout: dict) -> dict[str, Any]:
        """The shared schema's fields from a sidecar dict; ``readout``: where this sidecar's version kept them."""
        readout = values.get("readout") or readout
        return dict(model=str(values["model"]), model_signature=dict(values.get("model_signature") or {}),
                    labels=list(values.get("labels") or []), dtype=str(values.get("dtype", "float32")),
                    readout=_config(ReadoutConfig, {k: readout[k] for k in ("max_length", "special_tokens") if k in readout}),
                    data=Sample.from_dict(values.get("data")), train_seconds=values.get("train_seconds"),
                    created=str(values.get("created", "")), xlspt_version=str(values.get("xlspt_version", "")),
                    sha256=values.get(cls.checksum_key), format_version=str(values.get("format_version", "1.0")))

    @classmethod
    def from_dict(cls, values: dict) -> "Sidecar":
        raise NotImplementedError

    def check_model(self, signature: dict, model_name: str, width: int | None = None) -> None:
        """Refuse a model whose shape differs from the one the artifact was made for."""
        expected = self.model_signature
        if (width is not None and width != int(signature["hidden_size"])) or any(
            expected.get(k) != signature.get(k) for k in ("model_type", "hidden_size", "vocab_size")
        ):
            raise XlsptError(
                f"this {self.method} was made for {self.model!r} ({expected.get('model_type')}, hidden size "
                f"{expected.get('hidden_size')}), not {model_name!r} ({signature.get('model_type')}, hidden size "
                f"{signature.get('hidden_size')}): pass --model {self.model} or a {self.method} trained for this model"
            )


def check_format(values: dict, where: Path, known: set[str], kind: str = "prompt") -> None:
    """Refuse a sidecar of a newer MAJOR format version; warn about unknown keys of a newer MINOR one."""
    version = str(values.get("format_version", "1.0"))
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise XlsptError(f"{where} has the format version {version!r}, not MAJOR.MINOR: it is not an xlspt {kind} sidecar") from None
    ours = tuple(int(x) for x in FORMAT_VERSION.split("."))
    if major > ours[0]:
        raise XlsptError(f"{where} is format {version}, newer than this xlspt reads ({FORMAT_VERSION}): upgrade xlspt")
    unknown = sorted(set(values) - known)
    if unknown and (major, minor) > ours:
        warnings.warn(f"{where} is format {version} (this xlspt reads {FORMAT_VERSION}); ignoring its unknown "
                      f"entries {', '.join(unknown)}", FormatWarning, stacklevel=4)


def shareable(values: dict) -> tuple[dict, dict[str, str]]:
    """A copy of a sidecar's dict with no local path in it, and what was replaced (each path -> its name).

    Sidecars before 1.4 name their data by its local path (the top sample's and every ensemble member's), and
    a model loaded from a folder or a GGUF file is named by its path in any version: shared, such a path tells
    the world the user's folder layout. Each becomes its last component, which still says what it was; loading
    needs neither (the data is not read, and another machine names its model with ``--model``).
    """
    out = copy.deepcopy(values)
    replaced: dict[str, str] = {}

    def clean(holder: object, key: str, rule) -> None:
        value = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(value, str) and rule(value) != value:
            replaced[value] = holder[key] = rule(value)

    clean(out, "model", lambda name: _last_component(name) if _is_local_path(name) else name)
    members = (out.get("ensemble") or {}).get("members") if isinstance(out.get("ensemble"), dict) else None
    for sample in [out.get("data"), *(m.get("data") for m in members or [] if isinstance(m, dict))]:
        clean(sample, "source", _shared_source)
    return out, replaced


def _last_component(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("\\/"))[-1] or path


def _is_local_path(name: str) -> bool:
    """Whether a model name is a path on this machine, not a Hub id (``owner/name``) or an embedded model's alias."""
    return (name.startswith(("/", "~", ".")) or "\\" in name or re.match(r"[A-Za-z]:[\\/]", name) is not None
            or name.count("/") > 1 or Path(name).expanduser().exists())


def _shared_source(source: str) -> str:
    """A sample's ``source`` as 1.4 writes it: a Hub dataset id stays, any other source was a local path
    before 1.4 (SIB-200's folder, a CSV) and keeps its last component (idempotent on what 1.4 writes)."""
    if source.startswith("hf:"):  # hf:PATH loads a local dataset folder through `datasets`
        return f"hf:{_last_component(source[3:])}" if _is_local_path(source[3:]) else source
    return _last_component(source)


def text_fingerprint(text: str) -> str:
    """A short digest of a text: what a self-trained classifier keeps of the texts it trained on."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class SelfTrainingRecord:
    """What a self-trained classifier's sidecar records (protocol b): the self-training settings, the
    pseudo-labelled texts kept per language, and the fingerprints (:func:`text_fingerprint`) of the texts it
    trained on, so that they are never scored as test texts."""

    scope: str
    per_class: int
    min_confidence: float
    epochs: int
    languages: dict[str, int] = field(default_factory=dict)
    fingerprints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"protocol": "b", "scope": self.scope, "per_class": self.per_class, "min_confidence": self.min_confidence,
                "epochs": self.epochs, "languages": dict(self.languages), "fingerprints": list(self.fingerprints)}

    @classmethod
    def from_dict(cls, values: dict) -> "SelfTrainingRecord":
        return cls(scope=values.get("scope"), per_class=values.get("per_class"), min_confidence=values.get("min_confidence"),
                   epochs=values.get("epochs"), languages=dict(values.get("languages") or {}),
                   fingerprints=list(values.get("fingerprints") or ()))


@dataclass
class PromptSidecar(Sidecar):
    """A soft prompt or an ensemble of them: label words, calibration, and each member's training.

    A single prompt keeps its :class:`Training` entries at the top; an ensemble keeps the first
    member's there (they stand for the ensemble in summaries) and every member's under ``ensemble``.
    """

    method: ClassVar[str] = "prompt"
    weights_file: ClassVar[str] = PROMPT_FILE
    sidecar_file: ClassVar[str] = PROMPT_SIDECAR
    checksum_key: ClassVar[str] = "prompt_sha256"
    required: ClassVar[tuple[str, ...]] = ("model", "model_signature", "label_words", "prompt_config")

    label_words: dict[str, str] = field(default_factory=dict)
    label_token_ids: list[int] | None = None
    allow_first_subtoken: bool = False
    members: list[Training] = field(default_factory=list)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    diverged: str | None = None
    self_training: SelfTrainingRecord | None = None  # protocol b: the prompts read target-language text

    @property
    def training(self) -> Training:
        """The (first) member's training: it stands for an ensemble in summaries."""
        return self.members[0]

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def ensemble_summary(self) -> dict | None:
        """``size, seeds, sampling, distinct_train_examples`` of an ensemble (``None`` for one prompt)."""
        if not self.is_ensemble:
            return None
        seen = {(m.data.train_language, i) for m in self.members if m.data for i in m.data.train_index_ids}
        samples = {m.data.sampling_seed if m.data else None for m in self.members}
        return {"size": len(self.members), "seeds": [m.train_config.seed for m in self.members],
                "sampling": "shared" if len(samples) == 1 else "per-member", "distinct_train_examples": len(seen)}

    @classmethod
    def known_keys(cls) -> set[str]:
        return super().known_keys() | {"label_words", "label_token_ids", "allow_first_subtoken", "prompt_config",
                                       "train_config", "best_epoch", "best_val_loss", "history", "ensemble",
                                       "calibration", "diverged", "self_training"}

    def to_dict(self) -> dict:
        out = self.common_dict()
        out.update(label_words=dict(self.label_words), label_token_ids=self.label_token_ids,
                   allow_first_subtoken=self.allow_first_subtoken, **self.training.to_dict())
        if self.is_ensemble:
            out["ensemble"] = {**self.ensemble_summary(), "members": [m.to_dict() for m in self.members]}
        out["calibration"] = self.calibration.to_dict()
        if self.diverged is not None:
            out["diverged"] = self.diverged
        if self.self_training is not None:
            out["self_training"] = self.self_training.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "PromptSidecar":
        ensemble = values.get("ensemble")
        members = ([Training.from_dict(m) for m in ensemble["members"]] if isinstance(ensemble, dict)
                   else [Training.from_dict(values)])
        words = dict(values["label_words"])
        return cls(**cls.common_fields(values, values.get("train_config") or {}),
                   label_words=words, label_token_ids=values.get("label_token_ids"),
                   allow_first_subtoken=bool(values.get("allow_first_subtoken", False)), members=members,
                   calibration=CalibrationConfig.from_dict(values.get("calibration")), diverged=values.get("diverged"),
                   self_training=SelfTrainingRecord.from_dict(values["self_training"]) if values.get("self_training") else None)

    def __post_init__(self) -> None:
        if not self.labels:  # sidecars before 1.2: the label words' classes, in order
            self.labels = list(self.label_words)

    def summary_header(self) -> Header:
        ensemble = self.ensemble_summary()
        lines = [f"prompt: {self.training.prompt_config.to_dict()}",
                 self._training_line(self.training.best_epoch, self.training.train_config.seed)]
        if ensemble:
            lines.append(f"ensemble: {ensemble['size']} prompts (seeds {ensemble['seeds']}, {ensemble['sampling']} samples, "
                         f"{ensemble['distinct_train_examples']} distinct training examples); the table is their vote")
        lines.append(f"label words: {self.label_words}")
        return Header(self.model, self.data.train_language if self.data else None, len(self.labels), lines,
                      "soft prompt", ensemble)


@dataclass
class ProbeSidecar(Sidecar):
    """The probe baseline: its regularisation strength, chosen by log-loss on the validation examples."""

    method: ClassVar[str] = "probe"
    weights_file: ClassVar[str] = PROBE_FILE
    sidecar_file: ClassVar[str] = PROBE_SIDECAR
    checksum_key: ClassVar[str] = "probe_sha256"
    required: ClassVar[tuple[str, ...]] = ("model", "model_signature", "labels")

    C: float = 1.0
    validation_log_loss: dict[str, float] = field(default_factory=dict)

    @classmethod
    def known_keys(cls) -> set[str]:
        return super().known_keys() | {"C", "validation_log_loss", "max_length", "special_tokens"}

    def to_dict(self) -> dict:
        out = self.common_dict()
        out.update(created=self.created, C=self.C, validation_log_loss=self.validation_log_loss)
        if self.data is not None:
            out["data"] = self.data.to_dict()
        out["train_seconds"] = self.train_seconds
        return out

    def summary_header(self) -> Header:
        lines = [f"probe: logistic regression on the read-out state of text + EOS, C={self.C}",
                 self._training_line(None, self.data.sampling_seed if self.data else None), f"labels: {self.labels}"]
        return Header(self.model, self.data.train_language if self.data else None, len(self.labels), lines, "probe baseline")

    @classmethod
    def from_dict(cls, values: dict) -> "ProbeSidecar":
        return cls(**cls.common_fields(values, values), C=float(values.get("C", 1.0)),
                   validation_log_loss=dict(values.get("validation_log_loss") or {}))


@dataclass
class LoraSidecar(PromptSidecar):
    """Soft prompts with low-rank adapters on the frozen model (``lora.json``): a prompt sidecar's entries, and
    ``lora``: the adapters' settings (:class:`~xlspt.lora.LoraConfig`), their file and its SHA-256 and the
    numbers they hold. The prompts stay in ``prompt.safetensors``; the adapters are in
    ``adapter_model.safetensors`` under PEFT's key names (an ensemble's member ``i`` under ``members.<i>.``).
    A folder without ``prompt.json`` is not read as a plain prompt by earlier versions: scored without its
    adapters, it would answer wrongly."""

    method: ClassVar[str] = "lora"
    sidecar_file: ClassVar[str] = LORA_SIDECAR
    adapter_file: ClassVar[str] = ADAPTER_FILE
    required: ClassVar[tuple[str, ...]] = (*PromptSidecar.required, "lora")

    lora: dict = field(default_factory=dict)
    adapter_sha256: str | None = None
    adapter_parameters: int | None = None

    @classmethod
    def artifact_files(cls) -> tuple[str, ...]:
        return (cls.weights_file, cls.adapter_file, cls.sidecar_file)

    @classmethod
    def known_keys(cls) -> set[str]:
        return super().known_keys() | {"lora"}

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["lora"] = {**self.lora, "file": self.adapter_file, "sha256": self.adapter_sha256,
                       "parameters": self.adapter_parameters}
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "LoraSidecar":
        prompt = PromptSidecar.from_dict(values)
        lora = dict(values["lora"])
        recorded = {k: lora.pop(k, None) for k in ("file", "sha256", "parameters")}
        return cls(**{f.name: getattr(prompt, f.name) for f in dataclasses.fields(PromptSidecar)}, lora=lora,
                   adapter_sha256=recorded["sha256"], adapter_parameters=recorded["parameters"])

    def write(self, directory: Path) -> Path:
        self.adapter_sha256 = sha256_file(directory / self.adapter_file)
        return super().write(directory)

    def check_weights(self, directory: Path) -> None:
        super().check_weights(directory)
        self.checked_path(directory, self.adapter_file, self.adapter_sha256)

    def summary_header(self) -> Header:
        header = super().summary_header()
        settings = ", ".join(f"{k} {v}" for k, v in self.lora.items() if v is not None)
        header.lines.insert(1, f"low-rank adapters on the frozen model ({settings}): {self.adapter_parameters} numbers")
        return dataclasses.replace(header, kind="soft prompt with low-rank adapters")
