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
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

import pandas as pd
import torch

from ..artifact import PromptArtifact
from ..calibration import CalibrationConfig, Protocol, StateStatistics, self_trained_protocol
from ..data.sampling import FewShotSplit
from ..data.sib200 import CATEGORIES
from ..data.task import TaskData
from ..engine.options import ReadoutConfig
from ..engine.passes import PromptPass
from ..errors import ConfigError, XlsptError
from ..evaluate import Calibrator, Scorer, build_calibrator, readout_states
from ..models.loading import LoadedModel, load_model
from ..prompt import PromptConfig, SoftPrompt
from ..sidecar import PromptSidecar, Sample, Training
from ..train import TrainConfig, TrainingDiverged, TrainResult
from ..verbalizer import Verbalizer, propose_label_words
from .base import FitRequest, Log, Method, ReadsLikeItsSidecar, classifier_class, register, saved_method
from .recipes import DEFAULT_RECIPE, recipe as recipe_settings
from .scoring import PassOptions, ScoreRequest, ScoresInBatches, calibration_of, passes
from .training import FinishedJob, PromptJob, train_prompt_jobs

if TYPE_CHECKING:
    from ..lora import LoraConfig


def _quiet(message: str) -> None:
    """A log that drops its lines (the Python API trains quietly unless asked)."""


def text_fingerprint(text: str) -> str:
    """A short digest of a text: what a self-trained classifier keeps of the texts it trained on."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build_verbalizer(
    loaded: LoadedModel, label_words: dict[str, str] | None = None, allow_first_subtoken: bool = False,
    labels: Sequence[str] = CATEGORIES,
) -> Verbalizer:
    """The user's label words for ``labels`` (in class order), checked against the model's tokenizer.

    Classes without a given word get the model family's default for SIB-200's seven topics, and
    for any other label set a single-token word proposed from the label's name.
    """
    labels = tuple(labels)
    words = dict(label_words or {})
    if labels == CATEGORIES:
        words = {**loaded.adapter.label_words, **words}
    elif len(words) < len(labels):
        words = propose_label_words(loaded.tokenizer, labels, words)
    return Verbalizer.build(loaded.tokenizer, words, labels, allow_first_subtoken=allow_first_subtoken)


@register(Method.PROMPT)
@dataclass
class PromptClassifier(ScoresInBatches, ReadsLikeItsSidecar):
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

    def refuse_self_trained_test_splits(self, data: TaskData, languages: Sequence[str]) -> None:
        """:meth:`refuse_self_trained_texts` for the test splits of ``languages`` (nothing is read for prompts
        that were not self-trained)."""
        for language in languages if self.metadata.self_training else ():
            self.refuse_self_trained_texts(data.split(language, "test")["text"].tolist(), f" in {language}")

    def refuse_self_trained_texts(self, texts: Sequence[str], where: str = "") -> None:
        """Raise :class:`~xlspt.errors.XlsptError` when ``texts`` include texts these prompts were self-trained on."""
        record = self.metadata.self_training
        if not record:
            return
        seen = set(record.get("fingerprints") or ())
        overlap = sum(text_fingerprint(t) in seen for t in texts)
        if overlap:
            raise XlsptError(f"{overlap} of the texts scored{where} are texts this classifier was self-trained on "
                             "(protocol b): score texts it has not read, or the classifier from before self-training")

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

    # ------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        model: LoadedModel,
        data: TaskData,
        *,
        train_language: str = "eng_Latn",
        shots: int | None = None,
        prompt: PromptConfig | None = None,
        training: TrainConfig | None = None,
        label_words: dict[str, str] | None = None,
        allow_first_subtoken: bool = False,
        initial: SoftPrompt | None = None,
        sample_seed: int | None = None,
        ensemble: int | Sequence[int] | None = None,
        shared_sample: bool = False,
        calibration: CalibrationConfig | None = None,
        recipe: str | None = DEFAULT_RECIPE,
        progress: bool = True,
        lora: "LoraConfig | None" = None,
    ) -> "PromptClassifier":
        """Draw ``shots`` examples per class of ``train_language`` and train a prompt on them.

        ``recipe``: the named settings (:mod:`~xlspt.classifiers.recipes`) that fill every argument among
        ``shots``, ``prompt``, ``ensemble`` and ``calibration`` not given; by default the product's best measured
        one (``quality``: 8 reparameterized prompts, content-free calibration); ``"study"`` for the study's single
        prompt, ``None`` for the arguments' own defaults. Continuing a saved prompt (``initial``) takes no recipe.

        ``initial`` continues training from a saved prompt (``PromptArtifact.soft_prompt()``).
        ``sample_seed`` draws the examples (default: the training seed).
        ``ensemble``: train several prompts, one per seed (``N``: the seeds ``training.seed`` to
        ``training.seed + N - 1``; or a list of seeds), each on its own sample drawn with its seed,
        or all on the sample of ``training.seed`` with ``shared_sample``.
        ``lora``: train low-rank adapters on the frozen model with each prompt (the ``lora`` method: a
        :class:`~xlspt.classifiers.LoraClassifier` is returned); the recipe applies as named, so the default one
        trains 8 members, each with its adapters: :meth:`LoraClassifier.train` starts from no recipe (one prompt).
        """
        if recipe is not None and initial is None:
            chosen = recipe_settings(recipe).arguments()
            shots = chosen.get("shots", 8) if shots is None else shots
            prompt = prompt or chosen["prompt"]
            ensemble = chosen.get("ensemble") if ensemble is None else ensemble
            calibration = calibration or chosen["calibration"]
        shots = 8 if shots is None else shots
        prompt = initial.config if initial is not None else (prompt or PromptConfig())
        training = training or TrainConfig()
        seeds = _ensemble_seeds(ensemble, training.seed)
        request = FitRequest(
            train_language=train_language, shots=shots, seed=training.seed if sample_seed is None else sample_seed,
            readout=ReadoutConfig(max_length=training.max_length, special_tokens=training.special_tokens), prompt=prompt,
            training=training, label_words=label_words, allow_first_subtoken=allow_first_subtoken,
            ensemble=len(seeds or [None]), shared_sample=shared_sample, calibration=calibration, initial=initial,
            lora=lora, name="")
        kind = classifier_class(Method.LORA) if lora is not None else cls
        log = (lambda message: print(message, file=sys.stderr, flush=True)) if progress and seeds else _quiet
        [clf] = kind.fit_many(model, data, [request], progress=progress, log=log, desc="training", seeds=seeds)
        return clf

    @classmethod
    def fit_many(
        cls, model: LoadedModel, data: TaskData, requests: Sequence[FitRequest], *, progress: bool = True,
        log: Log = _quiet, raise_errors: bool = True, desc: str | None = None, seeds: list[int] | None = None,
    ) -> list["PromptClassifier | BaseException"]:
        """Train the prompts of ``requests`` through :func:`~xlspt.classifiers.training.train_prompt_jobs`, which
        groups them into passes; each request gets its classifier (its ensemble's vote) or the error that stopped it.

        ``seeds``: the members' seeds of a single request (default: ``seed`` to ``seed + ensemble - 1``).
        ``desc``: the progress bar's label, ``{n}`` the number of prompts trained together (default:
        ``training x{n}``, or ``training with the model`` for a request that trains the model too).
        """
        out: list[PromptClassifier | BaseException | None] = [None] * len(requests)
        by_words: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            words = tuple(sorted((request.label_words or {}).items()))
            by_words.setdefault((request.train_language, request.shots, words, request.allow_first_subtoken), []).append(i)
        for indices in by_words.values():
            try:
                outcomes = cls._train_requests(model, data, [requests[i] for i in indices], progress=progress, log=log,
                                               raise_errors=raise_errors, desc=desc, seeds=seeds)
            except Exception as exc:  # one bad group (label words, a sample) is that group's outcome
                if raise_errors:
                    raise
                outcomes = [exc] * len(indices)
            for i, outcome in zip(indices, outcomes):
                out[i] = outcome
        return out  # type: ignore[return-value]

    @classmethod
    def _train_requests(cls, model, data, requests: list[FitRequest], *, progress, log, raise_errors, desc, seeds):
        """Requests that share label words, language and shots: their members' jobs trained in one call."""
        first = requests[0]
        verbalizer = build_verbalizer(model, first.label_words, first.allow_first_subtoken, data.labels(first.train_language))
        jobs = [_member_jobs(r, seeds) for r in requests]
        desc = desc or ("training with the model" if first.changes_model else "training x{n}")
        done = train_prompt_jobs(model, data, verbalizer, [j for group in jobs for j in group],
                                 train_language=first.train_language, shots=first.shots, progress=progress, desc=desc,
                                 log=log, raise_errors=raise_errors)
        members = iter(cls.from_jobs(model, data, verbalizer, done, train_language=first.train_language,
                                     shots=first.shots, allow_first_subtoken=first.allow_first_subtoken))
        finished = iter(done)
        outcomes = []
        for request, group in zip(requests, jobs):
            mine = [next(members) for _ in group]
            mine_done = [next(finished) for _ in group]
            error = next((m for m in mine if isinstance(m, BaseException)), None)
            if error is None:
                clf = cls.ensemble_of(mine, calibration=request.calibration)
                clf.fit_reference(data)
                clf.fit_seconds = sum(item.seconds for item in mine_done)
                outcomes.append(clf)
                continue
            examples = mine_done[0].examples
            # a prompt trained with the model is useless without the model's weights, which are not kept
            if (isinstance(error, TrainingDiverged) and error.best is not None and len(mine) == 1 and request.out
                    and not request.changes_model and request.lora is None):
                kept = cls.from_training(model, verbalizer, data, examples, error.best,
                                         group[0].training, train_language=first.train_language, shots=first.shots,
                                         allow_first_subtoken=first.allow_first_subtoken, sample_seed=group[0].sample_seed)
                error = kept.keep_best_before_divergence(error, request.out)
            if raise_errors:
                raise error
            outcomes.append(error)
        return outcomes

    @classmethod
    def from_jobs(
        cls, model: LoadedModel, data: TaskData, verbalizer: Verbalizer, done: Sequence[FinishedJob], *,
        train_language: str, shots: int, allow_first_subtoken: bool = False,
    ) -> list["PromptClassifier | BaseException"]:
        """Each finished training job as a classifier, or the error that stopped it."""
        out: list[PromptClassifier | BaseException] = []
        for item in done:
            if isinstance(item.outcome, BaseException):
                out.append(item.outcome)
                continue
            out.append(cls.from_training(
                model, verbalizer, data, item.examples, item.outcome, item.job.training, train_language=train_language,
                shots=shots, allow_first_subtoken=allow_first_subtoken, seconds=item.seconds,
                sample_seed=item.job.sample_seed))
        return out

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

    @classmethod
    def from_training(
        cls,
        model: LoadedModel,
        verbalizer: Verbalizer,
        data: TaskData,
        examples: FewShotSplit,
        result: TrainResult,
        training: TrainConfig,
        *,
        train_language: str,
        shots: int,
        allow_first_subtoken: bool = False,
        seconds: float = 0.0,
        sample_seed: int | None = None,
    ) -> "PromptClassifier":
        """The classifier of a finished training, with the sidecar metadata that makes it reusable."""
        sample = Sample.drawn_from(
            data, train_language, shots_per_class=shots,
            validation_per_class=len(examples.validation) // len(verbalizer.labels),
            sampling_seed=training.seed if sample_seed is None else sample_seed,
            train_index_ids=[int(i) for i in examples.train["index_id"]],
            validation_index_ids=[int(i) for i in examples.validation["index_id"]],
        )
        member = Training(prompt_config=result.prompt.config, train_config=training, data=sample,
                          best_epoch=result.best_epoch, best_val_loss=result.best_val_loss, history=result.history,
                          train_seconds=round(seconds, 1), created=PromptSidecar().created)
        metadata = cls.sidecar_kind(
            model=model.name, model_signature=model.signature(), labels=list(verbalizer.labels),
            dtype=str(model.dtype).removeprefix("torch."), readout=ReadoutConfig(max_length=training.max_length, special_tokens=training.special_tokens), data=sample,
            label_words=verbalizer.as_dict(), label_token_ids=list(verbalizer.token_ids),
            allow_first_subtoken=allow_first_subtoken, members=[member],
        )
        return cls(model, verbalizer, [result.prompt.export()], metadata, [result.prompt])

    def keep_best_before_divergence(self, error: TrainingDiverged, out: str | Path) -> TrainingDiverged:
        """Save this classifier (the best prompt of a diverged training, marked ``diverged`` in its sidecar) in
        ``out``, and return the error, its message naming where the prompt is kept."""
        self.metadata.diverged = str(error)
        self.save(out)
        return TrainingDiverged(f"{error}; the best prompt before that (epoch {error.best.best_epoch}, validation loss "
                                f"{error.best.best_val_loss:.3f}) is kept in {out}", error.best)

    # ------------------------------------------------------------ saving and loading

    @classmethod
    def load(
        cls, path: str | Path, model: LoadedModel | str | None = None, *, dtype: str | None = None,
        device: str | None = None,
    ) -> "PromptClassifier":
        """Load a saved prompt or ensemble.

        Args:
            model: a loaded model, a model name, or ``None`` for the one named in the sidecar.
            dtype: when the model is loaded here: ``None`` for the dtype the prompt was trained in
                (so that evaluation reproduces), or ``"float32"``, ``"bfloat16"``, ``"auto"``.
        """
        artifact = PromptArtifact.load(path, cls.sidecar_kind)
        meta = artifact.metadata
        if model is None or isinstance(model, str):
            model = load_model(model or meta.model, dtype=dtype or meta.dtype, device=device)
        artifact.check_model(model.signature(), model.name)
        if not meta.training.train_config.freeze_model:
            raise XlsptError(
                "this prompt was trained together with the model's weights (--train-model), which are not saved: "
                "evaluate it in the same `xlspt run`"
            )
        verbalizer = build_verbalizer(model, meta.label_words, meta.allow_first_subtoken, meta.labels)
        if meta.label_token_ids is not None and list(verbalizer.token_ids) != list(meta.label_token_ids):
            raise XlsptError(
                f"the label words of this prompt map to other tokens in {model.name!r} than at training: "
                f"pass --model {artifact.model_name}"
            )
        prompts = [p.to(device=model.device) for p in artifact.prompts]
        return cls(model, verbalizer, prompts, meta, artifact.soft_prompts(), meta.calibration, artifact.reference)

    @classmethod
    def load_sidecar(cls, path: str | Path) -> PromptSidecar:
        """The sidecar of the prompt saved at ``path`` (checked with its prompt file, which it describes)."""
        return PromptArtifact.load(path, cls.sidecar_kind).metadata

    def fit_summary(self) -> str:
        """A line about the fit, for the command line."""
        members = self.metadata.members
        improving = sum(m.still_improving for m in members)
        note = (f"; the validation loss was still falling at the last epoch{f' for {improving} of {len(members)}' if len(members) > 1 else ''}"
                " (more epochs or min_steps may help)") if improving else ""
        if self.size > 1:
            ensemble = self.metadata.ensemble_summary()
            seconds = sum(m.train_seconds or 0 for m in members)
            return (f"trained {self.size} prompts in {seconds:.0f} s (seeds {ensemble['seeds']}, "
                    f"{ensemble['distinct_train_examples']} distinct training examples){note}")
        training = self.metadata.training
        return (f"trained in {training.train_seconds:.0f} s; best epoch {training.best_epoch} "
                f"(validation loss {training.best_val_loss:.3f}){note}")

    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.safetensors`` and ``prompt.json`` into ``directory``."""
        self.metadata.calibration = self.calibration
        if self.soft_prompts is not None:
            artifact = PromptArtifact.from_soft_prompts(self.soft_prompts, self.metadata)
        else:
            artifact = PromptArtifact(self.prompts, self.metadata)
        artifact.reference = self.reference
        return artifact.save(directory)

    def sidecar_dict(self) -> dict:
        """The sidecar as it is written (with the current calibration): what summaries and model cards read."""
        return dataclasses.replace(self.metadata, calibration=self.calibration).to_dict()

    def save_pretrained(self, directory: str | Path, results: pd.DataFrame | None = None) -> Path:
        """:meth:`save` plus a model card (``README.md``: base model, label words, training data,
        protocol and, given ``results``, per-language scores): a folder to share like an adapter."""
        from ..card import write_model_card

        path = self.save(directory)
        write_model_card(directory, self.sidecar_dict(), results)
        return path

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, model: LoadedModel | str | None = None, *, hub: str | Path | None = None,
        revision: str | None = None, token: str | None = None, dtype: str | None = None, device: str | None = None,
    ) -> "PromptClassifier":
        """Load a prompt folder, or a Hub repository (``owner/name``) saved with :meth:`save_pretrained`
        and :meth:`push_to_hub`; ``hub`` (or ``$XLSPT_HUB_DIR``) is a local folder standing in for the Hub."""
        from ..hub import resolve_pretrained

        folder = resolve_pretrained(name_or_path, hub=hub, revision=revision, token=token)
        saved = classifier_class(saved_method(folder)) if Path(folder).is_dir() else cls
        kind = saved if issubclass(saved, cls) else cls  # prompts with adapters load with them
        return kind.load(folder, model, dtype=dtype, device=device)

    def push_to_hub(
        self, repo_id: str, *, results: pd.DataFrame | None = None, hub: str | Path | None = None,
        token: str | None = None, private: bool = False,
    ) -> str:
        """Upload the prompt with its model card to the Hub repository ``repo_id`` (created if needed), or to
        ``hub``/``$XLSPT_HUB_DIR``, a local folder laid out like the Hub. Returns the repository's URL or path.
        What is uploaded holds no local path (:func:`~xlspt.hub.stage_shareable`), as with ``xlspt push``."""
        import tempfile

        from ..hub import push_folder, stage_shareable

        with tempfile.TemporaryDirectory(prefix="xlspt-push-") as folder:
            self.save(Path(folder) / "saved")
            stage_shareable(Path(folder) / "saved", Path(folder) / "shared", repo_id=repo_id, results=results)
            return push_folder(Path(folder) / "shared", repo_id, hub=hub, token=token, private=private)

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
                request.classifier.refuse_self_trained_texts(request.texts)
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
                scorer = Scorer(request.members or tuple(range(size)), calibration)
                out[i] = clf.calibrator(clf.scoring_readout(options), options.store).scores(
                    scorer, own[:, rows.of(request.texts)], unlabeled, request.language)
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
        self.refuse_self_trained_test_splits(data, languages)
        if calibration.standardize and self.reference is None:
            self.fit_reference(data, force=True, batch_size=options.batch_size or 32, engine=options.engine or "auto")

    @classmethod
    def scoring_line(cls, classifiers: Sequence["PromptClassifier"], languages: Sequence[str]) -> str:
        prompts = sum(c.size for c in classifiers)
        count = f"{prompts} prompts of {len(classifiers)} runs" if len(classifiers) > 1 else (
            f"the {prompts} prompts of the ensemble" if prompts > 1 else "the prompt")
        return f"scoring {count} on {len(languages)} languages"

    @classmethod
    def check_request(cls, request: FitRequest) -> None:
        """A soft prompt takes every setting."""

    def record_entries(self) -> dict:
        training = self.metadata.training
        return {"best_epoch": training.best_epoch, "best_val_loss": training.best_val_loss, "history": training.history,
                "protocol": self.protocol_name, "notes": []}



def _ensemble_seeds(ensemble: int | Sequence[int] | None, seed: int) -> list[int] | None:
    """The members' seeds of the Python API's ``ensemble`` (``None``: one prompt), refused unless distinct and
    non-negative."""
    if ensemble is None or (isinstance(ensemble, int) and ensemble == 1):
        return None
    seeds = list(range(seed, seed + ensemble)) if isinstance(ensemble, int) else list(ensemble)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError("ensemble", f"needs at least one distinct non-negative seed per member (got {ensemble})")
    return seeds


def _member_jobs(request: FitRequest, seeds: list[int] | None = None) -> list[PromptJob]:
    """The training jobs of one prompt, or of an ensemble's members (one per seed: ``seeds``, or the request's
    ``training.seed`` onwards). A request without a name (the Python API's) names members by number and seed."""
    training = request.training
    if request.ensemble == 1 and seeds is None:
        return [PromptJob(request.prompt, training, request.seed, request.initial, request.name or "a prompt",
                          request.lora)]
    seeds = _ensemble_seeds(request.ensemble, training.seed) if seeds is None else seeds
    if request.initial is not None:
        raise XlsptError("an ensemble trains new prompts: resume its members one at a time")
    names = [f"{request.name} member {i}" if request.name else f"ensemble member {i + 1}/{len(seeds)} (seed {seed})"
             for i, seed in enumerate(seeds)]
    return [PromptJob(request.prompt, dataclasses.replace(training, seed=seed), training.seed if request.shared_sample else seed,
                      name=name, adapter=request.lora) for name, seed in zip(names, seeds)]


def stacked_reference(classifiers: Sequence[PromptClassifier]) -> StateStatistics | None:
    """The reference statistics of several classifiers' prompts, in order (``None`` if none has any).

    A classifier without statistics gets placeholder rows: its scorers must not standardize.
    """
    if all(c.reference is None for c in classifiers):
        return None
    width = classifiers[0].prompts[0].shape[1]
    means = [c.reference.mean if c.reference is not None else torch.zeros(c.size, width) for c in classifiers]
    stds = [c.reference.std if c.reference is not None else torch.ones(c.size, width) for c in classifiers]
    return StateStatistics(torch.cat(means), torch.cat(stds))


def choose_label_words(
    model: LoadedModel,
    data: TaskData,
    candidates: Sequence[dict[str, str]],
    *,
    train_language: str = "eng_Latn",
    shots: int = 8,
    prompt: PromptConfig | None = None,
    training: TrainConfig | None = None,
    allow_first_subtoken: bool = False,
    progress: bool = True,
) -> tuple[dict[str, str], pd.DataFrame]:
    """Pick the label words whose prompt classifies the training language's dev split best.

    Each candidate (label -> word, or ``word1|word2`` for several) trains a prompt on the same
    sample with the same seed; the candidates are ranked by accuracy on the whole dev split of
    ``train_language`` (no target language is read). Returns the best candidate and a table
    ``candidate, label_words, dev_accuracy, dev_macro_f1`` (ties go to the earlier candidate).
    """
    from ..results import score

    if not candidates:
        raise XlsptError("no label-word candidates to choose from: give at least one")
    dev = data.split(train_language, "dev")
    rows = []
    for i, words in enumerate(candidates):
        if progress:
            print(f"label words {i + 1}/{len(candidates)}: {words}", file=sys.stderr, flush=True)
        clf = PromptClassifier.train(model, data, train_language=train_language, shots=shots, prompt=prompt,
                                     training=training, label_words=words, allow_first_subtoken=allow_first_subtoken,
                                     progress=progress, recipe="study")
        predicted = clf.predict(dev["text"].tolist())
        rows.append({"candidate": i, "label_words": clf.verbalizer.as_dict(),
                     **{f"dev_{k}": v for k, v in score(dev["label"].tolist(), predicted, clf.verbalizer.labels).items()}})
    table = pd.DataFrame(rows)
    best = int(table["dev_accuracy"].idxmax())
    return dict(table.at[best, "label_words"]), table
