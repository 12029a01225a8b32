"""Soft prompts with low-rank adapters on the frozen model: the ``lora`` method.

Each prompt trains together with its own low-rank adapters (:mod:`xlspt.lora`, through PEFT) on the
frozen base model, through the one training path; an ensemble's members each have theirs. The base model
is shared: an adapter is attached only while its prompt trains or reads text, and removed after, so
one loaded model still serves prompts, probes and LoRA classifiers side by side. Scoring goes through
the one scoring path; each adapter reads the distinct texts of a pass once (one pass per adapter).

>>> clf = xlspt.LoraClassifier.train(model, data, shots=8, lora=xlspt.LoraConfig(rank=8))
>>> clf.save("runs/lora")      # prompt.safetensors, adapter_model.safetensors (PEFT's keys), lora.json
>>> xlspt.load_classifier("runs/lora").predict(["Le match s'est terminé sur un score nul."])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.task import TaskData
from ..engine.options import Engine, ReadoutConfig
from ..errors import ConfigError, XlsptError
from ..evaluate import readout_states
from ..files import write_with_atomic
from ..lora import LoraConfig, adapter_parameters, adapter_tensors, adapters_from_tensors, attached_lora
from ..models.loading import LoadedModel
from ..sidecar import LoraSidecar
from .base import FitRequest, Method, register
from .prompt import PromptClassifier
from .scoring import PassOptions
from .training import FinishedJob


@register(Method.LORA)
@dataclass
class LoraClassifier(PromptClassifier):
    """A :class:`~xlspt.classifiers.PromptClassifier` whose prompt ``i`` reads text through its own low-rank
    adapters ``adapters[i]`` (PEFT's state-dict keys -> tensors) on the frozen model.

    Attributes:
        adapters: one adapter's weights per prompt.
        lora: the adapters' settings (rank, alpha, dropout, target layers, learning rate).
    """

    sidecar_kind: ClassVar[type[LoraSidecar]] = LoraSidecar
    #: each trains with the model in the loop and reads text through its own adapters: nothing is shared
    works_together = False

    adapters: list[dict[str, torch.Tensor]] = field(default_factory=list)
    lora: LoraConfig = field(default_factory=LoraConfig)

    @property
    def adapter_parameters(self) -> int:
        return adapter_parameters(self.adapters)

    @property
    def trainable_parameters(self) -> int:
        """The prompts (with their reparameterization networks when known) and the adapters."""
        return super().trainable_parameters + self.adapter_parameters

    @property
    def stored_parameters(self) -> int:
        return super().stored_parameters + self.adapter_parameters

    # ------------------------------------------------------------ training

    @classmethod
    def train(cls, model: LoadedModel, data: TaskData, *, lora: LoraConfig | None = None, **options) -> "LoraClassifier":
        """:meth:`PromptClassifier.train` with adapters (``lora``: their settings; default :class:`LoraConfig`).
        With no ``recipe`` given it trains one prompt (each member costs a training with the model in the loop)."""
        options.setdefault("recipe", None)
        return super().train(model, data, lora=lora or LoraConfig(), **options)

    @classmethod
    def check_request(cls, request: FitRequest) -> None:
        """Adapters train on the frozen model, from scratch."""
        if not request.training.freeze_model:
            raise ConfigError("freeze", "stays on with method lora: the adapters train, the model's own weights do not")
        if request.initial is not None:
            raise ConfigError("method", "lora trains new adapters with its prompt: continuing a saved prompt is for method prompt")

    @classmethod
    def fit_many(cls, model: LoadedModel, data: TaskData, requests: Sequence[FitRequest], **options):
        """:meth:`PromptClassifier.fit_many`, each request's prompts with adapters (default :class:`LoraConfig`)."""
        requests = [r if r.lora is not None else dataclasses.replace(r, lora=LoraConfig()) for r in requests]
        for request in requests:
            cls.check_request(request)
        return super().fit_many(model, data, requests, **options)

    @classmethod
    def from_jobs(cls, model: LoadedModel, data: TaskData, verbalizer, done: Sequence[FinishedJob],
                  **options) -> list["LoraClassifier | BaseException"]:
        out = super().from_jobs(model, data, verbalizer, done, **options)
        for clf, item in zip(out, done):
            if not isinstance(clf, BaseException):
                clf.adapters, clf.lora = [item.adapter_weights], item.job.adapter
                clf._describe_adapters()
        return out

    @classmethod
    def ensemble_of(cls, members: Sequence["LoraClassifier"], *, calibration=None) -> "LoraClassifier":
        out = super().ensemble_of(members, calibration=calibration)
        out.adapters, out.lora = [a for m in members for a in m.adapters], members[0].lora
        out._describe_adapters()
        return out

    def member(self, i: int) -> "LoraClassifier":
        out = super().member(i)
        out.adapters, out.lora = [self.adapters[i]], self.lora
        out._describe_adapters()
        return out

    def _describe_adapters(self) -> None:
        self.metadata.lora = self.lora.to_dict()
        self.metadata.adapter_parameters = self.adapter_parameters

    def fit_summary(self) -> str:
        return (f"{super().fit_summary()}; low-rank adapters (rank {self.lora.rank}) of {self.adapter_parameters} "
                f"numbers with {'each prompt' if self.size > 1 else 'the prompt'}")

    # ------------------------------------------------------------ saving and loading

    def save(self, directory: str | Path) -> Path:
        """Write ``adapter_model.safetensors``, then ``prompt.safetensors`` and ``lora.json`` (which records both
        files' checksums) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = adapter_tensors(self.adapters)
        write_with_atomic(directory / LoraSidecar.adapter_file,
                          lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
        self._describe_adapters()
        return super().save(directory)

    @classmethod
    def load(cls, path: str | Path, model: LoadedModel | str | None = None, **options) -> "LoraClassifier":
        """Load saved prompts with their adapters (the arguments of :meth:`PromptClassifier.load`)."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise XlsptError(f"{path} is not a folder: a LoRA classifier is saved as a folder (prompt.safetensors, "
                             f"{LoraSidecar.adapter_file} and lora.json)")
        clf = super().load(path, model, **options)
        where = clf.metadata.checked_path(path, LoraSidecar.adapter_file, clf.metadata.adapter_sha256)
        try:
            tensors = load_file(str(where))
        except (SafetensorError, OSError, ValueError) as exc:
            raise XlsptError(f"{where} is not a readable safetensors file ({exc}): re-train or restore it") from None
        clf.adapters = adapters_from_tensors(tensors, clf.size, str(where))
        clf.lora = LoraConfig.from_dict(clf.metadata.lora)
        return clf

    # ------------------------------------------------------------ scoring

    def read_states(self, texts: Sequence[str], readout: ReadoutConfig, store=None) -> torch.Tensor:
        """``[P, N, d]`` read-out states: each prompt reads ``texts`` with its adapters attached (one pass per
        adapter). ``store`` is not used: text states kept for the frozen model are not those of its adapters."""
        states = []
        for prompt, weights in zip(self.prompts, self.adapters):
            with attached_lora(self.model, self.lora, weights):
                states.append(readout_states(self.model, [prompt], texts, readout)[0])
        return torch.stack(states)

    @classmethod
    def _pass_states(cls, classifiers: Sequence["LoraClassifier"], texts: Sequence[str], readout: ReadoutConfig,
                     options: PassOptions) -> tuple[torch.Tensor, dict[int, tuple[int, int]]]:
        [clf] = classifiers  # each reads alone (_reads_alike): its adapters are its own
        return clf.read_states(texts, readout), {id(clf): (0, clf.size)}

    @staticmethod
    def _reads_alike(clf: "LoraClassifier") -> tuple:
        return (id(clf),)

    @classmethod
    def pass_engine(cls, classifiers: Sequence["LoraClassifier"], engine: Engine | str | None = None) -> str:
        return Engine(engine or Engine.AUTO).for_scoring(1).value  # a pass per adapter, one prompt each

    @classmethod
    def scoring_line(cls, classifiers: Sequence["LoraClassifier"], languages: Sequence[str]) -> str:
        adapters = sum(c.size for c in classifiers)
        return f"scoring {adapters} prompt{'s' if adapters > 1 else ''} with {'their' if adapters > 1 else 'its'} adapters on {len(languages)} languages"
