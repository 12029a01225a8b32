"""The soft prompt classifier: one prompt or an ensemble of them, on a frozen model.

>>> import xlspt
>>> model = xlspt.load_model()                      # the embedded Gemma 3 270M
>>> data = xlspt.TaskData.resolve("../shared/sib200")
>>> clf = xlspt.PromptClassifier.train(model, data, shots=8, prompt=xlspt.PromptConfig(length=4))
>>> clf.evaluate(data, ["fra_Latn", "swh_Latn"])   # DataFrame: language, accuracy, macro_f1, n, protocol
>>> clf.predict(["Le match s'est terminé sur un score nul."])
['sports']
>>> clf.save("runs/my-prompt"); xlspt.PromptClassifier.load("runs/my-prompt")

An ensemble of prompts (one per seed) with a calibration protocol (:mod:`xlspt.calibration`):

>>> ens = xlspt.PromptClassifier.train(model, data, shots=8, ensemble=4)
>>> ens.evaluate(data, ["fra_Latn"], calibration=xlspt.CalibrationConfig("unlabeled"), members=True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import pandas as pd
import torch

from ..calibration import CalibrationConfig, Protocol, StateStatistics, self_trained_protocol
from ..data.task import TaskData
from ..engine.options import ReadoutConfig
from ..engine.passes import PromptPass
from ..errors import XlsptError
from ..evaluate import Calibrator, Vote, build_calibrator, readout_states
from ..models.loading import LoadedModel
from ..soft_prompt import SoftPrompt
from ..sidecar import PromptSidecar
from ..verbalizer import Verbalizer
from .base import Method, ReadsLikeItsSidecar, register
from .saving import SavedAsFolder
from .scoring import PassOptions, ScoreRequest, ScoresInBatches, calibration_of, passes
from .self_training import refuse_self_trained_test_splits, refuse_self_trained_texts
from .training import TrainsPrompts


@register(Method.PROMPT)
@dataclass
class PromptClassifier(TrainsPrompts, SavedAsFolder, ScoresInBatches, ReadsLikeItsSidecar):
    """A frozen causal LM, a verbalizer and trained soft prompts ``[n_i, d]``: one, or an ensemble's members.

    An ensemble predicts with the mean of its members' class log-probabilities; scoring all
    members costs one pass over the text.

    Attributes:
        model: the loaded model the prompts belong to.
        verbalizer: label words and their token ids.
        prompts: the ``[n_i, d]`` prompt matrices in embedding-table space.
        metadata: the typed sidecar (:class:`~xlspt.sidecar.PromptSidecar`: configs, data sample and training
            history of each member).
        soft_prompts: the trainable modules (with their reparameterization networks), when known.
        calibration: how scores are corrected by default (:mod:`xlspt.calibration`); saved in the sidecar.
        reference: the training language's read-out mean and spread per prompt (``[P, d]``), which
            ``standardize`` moves other languages to; saved with the prompts.
    """

    #: the typed sidecar its folder holds
    sidecar_kind: ClassVar[type[PromptSidecar]] = PromptSidecar

    model: LoadedModel
    verbalizer: Verbalizer
    prompts: list[torch.Tensor]
    metadata: PromptSidecar
    soft_prompts: list[SoftPrompt] | None = None
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    reference: StateStatistics | None = None
    fit_seconds: float = field(default=0.0, compare=False, repr=False)  # how long training took, for run records
    # calibrators by how they read text: content-free priors are computed once per classifier, not per call
    _calibrators: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.prompts, torch.Tensor):
            self.prompts = [self.prompts]
        if isinstance(self.soft_prompts, SoftPrompt):
            self.soft_prompts = [self.soft_prompts]

    @property
    def prompt(self) -> torch.Tensor:
        """The prompt ``[n, d]`` (an ensemble's first member)."""
        return self.prompts[0]

    @property
    def soft_prompt(self) -> SoftPrompt | None:
        return self.soft_prompts[0] if self.soft_prompts else None

    @property
    def protocol_name(self) -> str:
        """The calibration's name, marked ``+self-trained`` when the prompts were self-trained on target text
        (which makes any calibration protocol b)."""
        return self.marked_protocol(self.calibration.name)

    def marked_protocol(self, protocol: str) -> str:
        """``protocol`` (a calibration's name), marked as protocol b when the prompts were self-trained."""
        return self_trained_protocol(protocol) if self.metadata.self_training else protocol

    def marked_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """A results table of these prompts, its protocols marked when they were self-trained."""
        return table.assign(protocol=table["protocol"].map(self.marked_protocol)) if self.metadata.self_training else table

    @property
    def size(self) -> int:
        """Number of prompts (1 for a single prompt)."""
        return len(self.prompts)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.verbalizer.labels)

    @property
    def trainable_parameters(self) -> int:
        """The parameters that trained: the prompts, with their reparameterization networks when known."""
        if self.soft_prompts is not None:
            return sum(p.numel() for sp in self.soft_prompts for p in sp.parameters())
        return sum(p.numel() for p in self.prompts)

    @property
    def stored_parameters(self) -> int:
        return sum(p.numel() for p in self.prompts)

    # ------------------------------------------------------------ ensembles and members (training: TrainsPrompts)

    @classmethod
    def ensemble_of(
        cls, members: Sequence["PromptClassifier"], *, calibration: CalibrationConfig | None = None
    ) -> "PromptClassifier":
        """One classifier voting with the prompts of ``members`` (same model and label words)."""
        members = list(members)
        if not members:
            raise XlsptError("an ensemble needs at least one prompt")
        first = members[0]
        if len(members) == 1 and first.size == 1:  # one prompt stays a single prompt, not an ensemble of one
            return cls(first.model, first.verbalizer, list(first.prompts), dataclasses.replace(first.metadata),
                       first.soft_prompts, calibration or first.calibration, first.reference)
        for other in members[1:]:
            if other.model is not first.model or other.verbalizer != first.verbalizer:
                raise XlsptError("the prompts of an ensemble need the same model and label words: train them alike")
            if other.readout != first.readout:
                raise XlsptError("the prompts of an ensemble need the same max_length and special_tokens")
        metadata = dataclasses.replace(first.metadata, members=[t for m in members for t in m.metadata.members])
        prompts = [p for m in members for p in m.prompts]
        soft = [sp for m in members for sp in (m.soft_prompts or [None] * m.size)]
        reference = stacked_reference(members) if all(m.reference is not None for m in members) else None
        return cls(first.model, first.verbalizer, prompts, metadata,
                   soft if all(sp is not None for sp in soft) else None, calibration or first.calibration, reference)

    def fit_reference(self, data: TaskData, *, force: bool = False, batch_size: int = 32, engine: str = "auto") -> None:
        """Estimate :attr:`reference` on the training language's unlabeled texts (the calibration's
        ``unlabeled_split``) when the calibration standardizes (or ``force``)."""
        if not (self.calibration.standardize or force) or (self.reference is not None and not force):
            return
        sample = self.metadata.training.data
        language = sample.train_language if sample is not None else "eng_Latn"
        texts = data.split(language, self.calibration.unlabeled_split)["text"].tolist()
        self.reference = StateStatistics.of(self.read_states(texts, self._readout(batch_size, engine)))

    def member(self, i: int) -> "PromptClassifier":
        """Member ``i`` of an ensemble as a classifier of its own."""
        own = self.metadata.members[i]
        metadata = dataclasses.replace(self.metadata, members=[own], data=own.data)
        soft = [self.soft_prompts[i]] if self.soft_prompts else None
        reference = self.reference and StateStatistics(self.reference.mean[i : i + 1], self.reference.std[i : i + 1])
        return type(self)(self.model, self.verbalizer, [self.prompts[i]], metadata, soft, self.calibration, reference)

    # ------------------------------------------------------------ scoring

    def _readout(self, batch_size: int, engine: str) -> ReadoutConfig:
        """How texts are read: as at training, with this batch size and pass."""
        return dataclasses.replace(self.readout, batch_size=batch_size, engine=engine)

    def scoring_readout(self, options: PassOptions = PassOptions()) -> ReadoutConfig:
        """How a pass reads text for these prompts: as at training, with the batch size and engine of ``options``
        (``None``: the saved read-out's)."""
        return dataclasses.replace(self.readout, batch_size=options.batch_size or self.readout.batch_size,
                                   engine=options.engine or self.readout.engine)

    def calibrator(self, readout: ReadoutConfig, store=None) -> Calibrator:
        """The calibrator of these prompts reading text as ``readout`` says (kept: its content-free priors are
        computed once)."""
        key = (readout, id(self.reference), id(store))
        if key not in self._calibrators:
            self._calibrators[key] = build_calibrator(self.model, self.verbalizer, self.prompts, [], readout,
                                                      reference=self.reference, store=store, read=self.read_states)
        return self._calibrators[key]

    def read_states(self, texts: Sequence[str], readout: ReadoutConfig, store=None) -> torch.Tensor:
        """``[P, N, d]`` read-out states of every prompt on ``texts`` (one pass; ``store``: text states kept on disk)."""
        return readout_states(self.model, self.prompts, texts, readout, store=store)

    def prepare_scoring(self, options: PassOptions = PassOptions()) -> None:
        """Compute the content-free priors now (a server does, so that its first request does not wait for them)."""
        if self.calibration.protocol is Protocol.CONTENT_FREE:
            self.calibrator(self.scoring_readout(options)).content_free(self.calibration, None)

    @staticmethod
    def _reads_alike(clf: "PromptClassifier") -> tuple:
        """Prompts with equal keys share a pass: one model, text truncated and tokenized alike."""
        return id(clf.model), clf.readout.max_length, clf.readout.special_tokens

    @classmethod
    def _pass_states(cls, classifiers: Sequence["PromptClassifier"], texts: Sequence[str], readout: ReadoutConfig,
                     options: PassOptions) -> tuple[torch.Tensor, dict[int, tuple[int, int]]]:
        """``[P, N, d]`` read-out states of the prompts of every one of ``classifiers`` on ``texts``, in one pass, and
        where each classifier's prompts are among them (``id -> (start, size)``)."""
        prompts, spans = [], {}
        for clf in classifiers:
            spans[id(clf)] = (len(prompts), clf.size)
            prompts += clf.prompts
        reading = PromptPass(classifiers[0].model, texts, [p.shape[0] for p in prompts], max_length=readout.max_length,
                             special_tokens=readout.special_tokens)
        return reading.states(prompts, readout.engine, readout.batch_size, store=options.store), spans

    @classmethod
    def score_requests(cls, requests: Sequence[ScoreRequest], options: PassOptions = PassOptions()) -> list[torch.Tensor]:
        """``[N_i, C]`` class log-probabilities of each request: the prompts of every classifier a pass's requests
        ask read each distinct text once (:class:`~xlspt.engine.PromptPass`), then each request is calibrated on its
        own rows, by its own classifier's prompts (its ``members``) and calibration."""
        out: list[torch.Tensor | None] = [None] * len(requests)
        for indices, classifiers, rows in passes(requests, cls._reads_alike):
            for i in indices:  # every refusal before the pass
                request = requests[i]
                refuse_self_trained_texts(request.classifier, request.texts)
                calibration_of(request).check_inputs(len(request.texts), len(request.unlabeled),
                                                     request.classifier.reference is not None)
            states, spans = cls._pass_states(classifiers, rows.texts, classifiers[0].scoring_readout(options), options)
            for i in indices:
                request = requests[i]
                clf = request.classifier
                start, size = spans[id(clf)]
                own = states[start : start + size]
                calibration = calibration_of(request)
                unlabeled = own[:, rows.of(request.unlabeled)] if calibration.protocol is Protocol.UNLABELED else None
                vote = Vote(request.members or tuple(range(size)), calibration)
                out[i] = clf.calibrator(clf.scoring_readout(options), options.store).scores(
                    vote, own[:, rows.of(request.texts)], unlabeled, request.language)
        return out  # type: ignore[return-value]

    def protocol_of(self, calibration: CalibrationConfig) -> str:
        return calibration.name

    def protocol_label(self, calibration: CalibrationConfig | None = None) -> str:
        """The protocol its answers follow, for a reader (marked when the prompts were self-trained)."""
        return self.marked_protocol((calibration or self.calibration).name)

    def prepare_evaluation(self, data: TaskData, languages: Sequence[str], calibration: CalibrationConfig,
                           options: PassOptions = PassOptions()) -> None:
        """Refuse test splits it was self-trained on; estimate the reference statistics a standardizing calibration
        needs, when it was saved without them."""
        refuse_self_trained_test_splits(self, data, languages)
        if calibration.standardize and self.reference is None:
            self.fit_reference(data, force=True, batch_size=options.batch_size or 32, engine=options.engine or "auto")

    @classmethod
    def scoring_line(cls, classifiers: Sequence["PromptClassifier"], languages: Sequence[str]) -> str:
        prompts = sum(c.size for c in classifiers)
        count = f"{prompts} prompts of {len(classifiers)} runs" if len(classifiers) > 1 else (
            f"the {prompts} prompts of the ensemble" if prompts > 1 else "the prompt")
        return f"scoring {count} on {len(languages)} languages"


def stacked_reference(classifiers: Sequence[PromptClassifier]) -> StateStatistics | None:
    """The reference statistics of several classifiers' prompts, in order (``None`` if none has any).

    A classifier without statistics gets placeholder rows: its votes must not standardize.
    """
    if all(c.reference is None for c in classifiers):
        return None
    width = classifiers[0].prompts[0].shape[1]
    means = [c.reference.mean if c.reference is not None else torch.zeros(c.size, width) for c in classifiers]
    stds = [c.reference.std if c.reference is not None else torch.ones(c.size, width) for c in classifiers]
    return StateStatistics(torch.cat(means), torch.cat(stds))


