"""What every trained classifier offers, and the registry that finds one by its method.

lm-evaluation-harness's ``api/registry.py`` and ``api/model.py`` are the pattern: callers name a
method (``prompt``, ``probe``) or hand over a saved folder, and get an object with one
interface; they never branch on the method themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence, runtime_checkable

from ..calibration import CalibrationConfig
from ..engine.options import ReadoutConfig
from ..errors import XlsptError
from ..soft_prompt import PromptConfig, SoftPrompt
from ..sidecar import Sidecar
from ..train import TrainConfig

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ..data.task import TaskData
    from ..engine.options import ReadoutConfig
    from ..lora import LoraConfig
    from ..models.loading import LoadedModel


class Method(str, Enum):
    """What is trained: a soft ``prompt`` (one, or an ensemble), the frozen-feature ``probe`` baseline, or a soft
    prompt with low-rank adapters on the frozen model (``lora``)."""

    PROMPT = "prompt"
    PROBE = "probe"
    LORA = "lora"


@dataclass
class FitRequest:
    """What one classifier is fitted with: its sample, its method's settings, and where it goes.

    Built by the study runner from a run config, and by the Python API from its arguments.

    Attributes:
        train_language, shots, seed: the sample (``shots`` examples per class of ``train_language``,
            drawn with ``seed``; an ensemble's member ``i`` trains with ``seed + i``).
        readout: how texts are read (maximum length, special tokens).
        prompt, training, label_words, allow_first_subtoken, ensemble, shared_sample, calibration,
            initial: a soft prompt's settings (the probe reads none of them).
        lora: the low-rank adapters trained with each prompt (the ``lora`` method's; ``None`` for the others).
        name: how logs name it.
    """

    train_language: str = "eng_Latn"
    shots: int = 8
    seed: int = 0
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    label_words: dict[str, str] | None = None
    allow_first_subtoken: bool = False
    ensemble: int = 1
    shared_sample: bool = False
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    initial: SoftPrompt | None = None
    lora: "LoraConfig | None" = None
    name: str = "a prompt"

    @property
    def changes_model(self) -> bool:
        """Whether fitting trains the model's weights too (the runner restores them after the run)."""
        return not self.training.freeze_model


@runtime_checkable
class Classifier(Protocol):
    """A trained classifier on a frozen model: fitted on a few-shot sample, saved and loaded with a typed sidecar.

    Attributes:
        method: the registry key of the implementation.
        model: the loaded model it reads.
        metadata: the typed sidecar (:class:`~xlspt.sidecar.Sidecar`) written with it.
    """

    method: ClassVar[Method]
    model: "LoadedModel"
    metadata: Sidecar
    #: seconds its fit took (a run record's ``train`` timing); 0 for a loaded one
    fit_seconds: float
    #: whether a request may ask for a calibration (:mod:`xlspt.calibration`)
    takes_calibration: ClassVar[bool]
    #: whether classifiers of the method fit and score together with others (a study runs them as one group);
    #: else each is fitted and scored on its own, its record written before the next starts
    works_together: ClassVar[bool]

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def readout(self) -> "ReadoutConfig": ...

    @property
    def size(self) -> int:
        """Number of scorers that vote (prompts of an ensemble; 1 otherwise)."""

    @property
    def trainable_parameters(self) -> int: ...

    @property
    def stored_parameters(self) -> int:
        """Numbers a user keeps to reuse it (its weights file's)."""

    @classmethod
    def score_requests(cls, requests: Sequence, options=...) -> "list[torch.Tensor]":
        """The one scoring primitive: ``[N_i, C]`` class log-probabilities of each
        :class:`~xlspt.classifiers.scoring.ScoreRequest` (texts, members,
        calibration, unlabeled texts, language), reading each distinct text once per pass of classifiers that
        read text alike. Everything below is derived from it (:class:`~xlspt.classifiers.scoring.ScoresInBatches`)."""

    def scores(self, texts: Sequence[str], **options: Any) -> "torch.Tensor":
        """``[N, C]`` class log-probabilities of ``texts``."""

    def predict(self, texts: Sequence[str], **options: Any) -> list[str]:
        """The predicted class of each text."""

    def classify(self, texts: Sequence[str], **options: Any) -> "pd.DataFrame":
        """Scored predictions: ``text, label, probability`` (and ``top_k``)."""

    def evaluate(self, data: "TaskData", languages: Sequence[str], **options: Any) -> "pd.DataFrame":
        """Accuracy and macro-F1 per language (``language, accuracy, macro_f1, n, protocol``)."""

    def protocol_label(self, calibration: CalibrationConfig | None = None) -> str:
        """The protocol its answers follow, for a reader."""

    def marked_table(self, table: "pd.DataFrame") -> "pd.DataFrame":
        """A results table of it, its protocols marked as it needs (self-trained prompts)."""

    def prepare_scoring(self, options=...) -> None:
        """Work every later request would otherwise wait for (content-free priors)."""

    def save(self, directory: str | Path) -> Path:
        """Write the weights file and the sidecar into ``directory``; returns the weights file."""

    @classmethod
    def load(cls, directory: str | Path, model: "LoadedModel | str | None" = None, **options: Any) -> "Classifier": ...

    @classmethod
    def fit_many(cls, model: "LoadedModel", data: "TaskData", requests: Sequence[FitRequest], *, progress: bool = True,
                 raise_errors: bool = True) -> "list[Classifier | BaseException]":
        """Fit one classifier per request, sharing what they can; each request gets its classifier or the error
        that stopped it (with ``raise_errors``, the first error propagates). Says a line per group it fits."""

    @classmethod
    def evaluate_many(cls, classifiers: "Sequence[Classifier]", data: "TaskData", languages: Sequence[str], *,
                      progress: bool = True, limit: int = 0) -> "list[Evaluation]":
        """Evaluate classifiers that read text alike together: one pass over each language's text for all (``limit``:
        the first ``limit`` texts of each language only; 0: all). Says a line before it scores."""

    @classmethod
    def check_request(cls, request: FitRequest) -> None:
        """Refuse settings this method has no use for (a :class:`~xlspt.errors.ConfigError` naming ``method``)."""

    def record_entries(self) -> dict:
        """What a run record keeps of the fit: ``best_epoch``, ``best_val_loss``, ``history``, ``protocol``, ``notes``."""

    def sidecar_dict(self) -> dict:
        """The sidecar as written: what summaries and model cards read."""

    def fit_summary(self) -> str:
        """A line about the fit (time, best epoch or chosen regularisation), for the command line."""

    @staticmethod
    def load_sidecar(path: str | Path) -> Sidecar:
        """The typed sidecar of the artifact saved at ``path``, without loading a model."""


@dataclass
class Evaluation:
    """One classifier's per-language results (its vote, for an ensemble), each member's own, and the pass that read the text."""

    results: "pd.DataFrame"
    member_results: "list[pd.DataFrame] | None" = None
    engine: str = "naive"


class ReadsLikeItsSidecar:
    """What every implementation reads from its typed sidecar (``self.metadata``): the read-out settings."""

    metadata: Sidecar

    @property
    def readout(self) -> "ReadoutConfig":
        """How texts are read: the maximum length and special tokens it was fitted with."""
        return self.metadata.readout

    @property
    def max_length(self) -> int:
        return self.readout.max_length

    @property
    def special_tokens(self) -> str:
        return self.readout.special_tokens.value


_REGISTRY: dict[Method, type] = {}


def register(method: Method):
    """Class decorator: make ``cls`` the implementation of ``method``."""

    def wrap(cls):
        cls.method = method
        _REGISTRY[method] = cls
        return cls

    return wrap


def classifier_class(method: Method | str) -> type:
    """The implementation of ``method`` (the package's ``__init__`` imports every implementation, so they are registered)."""
    try:
        return _REGISTRY[Method(method.value if isinstance(method, Enum) else method)]
    except (KeyError, ValueError):
        raise XlsptError(f"unknown method {method!r}: use one of {', '.join(m.value for m in Method)}") from None


def saved_method(path: str | Path) -> Method:
    """The method of the artifact saved at ``path`` (a folder, or a prompt ``.safetensors`` file)."""
    path = Path(path).expanduser()
    kind = Sidecar.kind_of(path) if path.is_dir() else None
    return Method(kind.method) if kind is not None else Method.PROMPT


def load_classifier(path: str | Path, model: "LoadedModel | str | None" = None, **options: Any) -> Classifier:
    """Load whatever classifier is saved at ``path`` (a prompt, an ensemble or a probe), on ``model``."""
    return classifier_class(saved_method(path)).load(path, model, **options)

