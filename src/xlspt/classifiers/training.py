"""The one path that trains soft prompts: jobs grouped into passes, each group on its sample.

Every caller trains through :func:`train_prompt_jobs`: the Python API (one prompt or an
ensemble's members), ``xlspt label-words`` (one prompt per candidate), and the study runner
(``xlspt run``, ``xlspt train`` and every sweep). It alone decides which prompts train
together: prompts that take the same steps (batches, epochs, loss and text encoding, the model
frozen) train in one pass at every step (:func:`~xlspt.train.train_prompts`): those that draw
the same sample with the same seed packed after its cached text, those on other samples (an
ensemble's members) side by side with it, each in its own seed's order. Anything else trains
alone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Self, Sequence

import torch

from ..calibration import CalibrationConfig
from ..data.sampling import FewShotSplit, sample_few_shot
from ..data.task import TaskData
from ..engine.options import Engine, ReadoutConfig
from ..errors import ConfigError, XlsptError
from ..logs import muted
from ..lora import LoraConfig, attached_lora, lora_weights
from ..models.loading import LoadedModel
from ..soft_prompt import PromptConfig, SoftPrompt
from ..sidecar import PromptSidecar, Sample, Training
from ..train import TrainConfig, TrainingDiverged, TrainResult, train_prompts
from ..verbalizer import Verbalizer, build_verbalizer
from .base import FitRequest, Method, classifier_class
from .recipes import DEFAULT_RECIPE, recipe as recipe_settings

logger = logging.getLogger(__name__)


@dataclass
class PromptJob:
    """One prompt to train: its shape and optimisation, the seed its sample is drawn with, and a name for logs.

    ``initial``: continue from a saved prompt (with its reparameterization network). ``adapter``: train low-rank
    adapters on the frozen model with the prompt (at the adapters' own learning rate), initialised from the
    training seed.
    """

    prompt: PromptConfig
    training: TrainConfig
    sample_seed: int
    initial: SoftPrompt | None = None
    name: str = "a prompt"
    adapter: LoraConfig | None = None


@dataclass
class FinishedJob:
    """A trained job: its result (the best epoch's prompt, and its adapters' weights) or the error that stopped it,
    with what it read."""

    job: PromptJob
    examples: FewShotSplit | None
    outcome: TrainResult | BaseException
    seconds: float = 0.0
    adapter_weights: dict[str, torch.Tensor] | None = None


def step_key(job: PromptJob) -> tuple:
    """Prompts with equal keys take the same steps, each on its sample: they train together.

    A prompt that trains the model or adapters too, or resumes from a saved one, trains alone.
    """
    t = job.training
    model_trains = not t.freeze_model or job.adapter is not None
    alone = id(job) if (model_trains or job.initial is not None) else None
    return (*t.steps_key(seed=False), Engine(t.engine).for_training(model_trains), alone)


def group_jobs(jobs: Sequence[PromptJob]) -> list[list[PromptJob]]:
    """``jobs`` grouped by :func:`step_key`, in the order of their first job."""
    groups: dict[tuple, list[PromptJob]] = {}
    for job in jobs:
        groups.setdefault(step_key(job), []).append(job)
    return list(groups.values())


def _by_sample_size(jobs: Sequence[PromptJob], drawn: dict[int, FewShotSplit]) -> list[list[PromptJob]]:
    """``jobs`` by the sizes of their samples (samples read side by side have equal sizes; a small class of an
    own task can make a sample smaller)."""
    sizes: dict[tuple, list[PromptJob]] = {}
    for job in jobs:
        sample = drawn[job.sample_seed]
        sizes.setdefault((len(sample.train), len(sample.validation)), []).append(job)
    return list(sizes.values())


def train_prompt_jobs(
    model: LoadedModel, data: TaskData, verbalizer: Verbalizer, jobs: Sequence[PromptJob], *,
    train_language: str, shots: int, progress: bool = True, desc: str = "training",
    raise_errors: bool = True,
) -> list[FinishedJob]:
    """Train ``jobs`` (all on ``verbalizer``'s labels, ``shots`` per class of ``train_language``), group by group.

    Returns one :class:`FinishedJob` per job, in order. A prompt whose loss diverged gets its
    :class:`~xlspt.train.TrainingDiverged` (with the best epoch before it in ``.best``); with
    ``raise_errors`` (the Python API) any other error propagates, otherwise it is that group's outcome.
    ``desc`` may hold ``{n}``, the number of prompts of the group.
    """
    finished: dict[int, FinishedJob] = {}
    for group in group_jobs(jobs):
        names = ", ".join(job.name for job in group)
        logger.info(f"training {f'{len(group)} prompts together ({names})' if len(group) > 1 else f'a prompt ({names})'} "
                    f"on {shots} examples per class of {train_language}")
        started = time.time()
        try:
            drawn = {seed: sample_few_shot(data, train_language, shots, seed) for seed in {j.sample_seed for j in group}}
            for jobs_of_size in _by_sample_size(group, drawn):
                examples = [drawn[j.sample_seed] for j in jobs_of_size]
                if jobs_of_size[0].adapter is not None:  # alone in its group (step_key)
                    [job] = jobs_of_size
                    finished[id(job)] = _train_with_adapter(model, verbalizer, job, examples[0], progress,
                                                            desc.format(n=1))
                    continue
                results = train_prompts(model, verbalizer, examples, [j.prompt for j in jobs_of_size],
                                        [j.training for j in jobs_of_size], initials=[j.initial for j in jobs_of_size],
                                        progress=progress, desc=desc.format(n=len(jobs_of_size)))
                finished.update({id(j): FinishedJob(j, e, r) for j, e, r in zip(jobs_of_size, examples, results)})
        except Exception as exc:
            if raise_errors:
                raise
            finished.update({id(j): FinishedJob(j, None, exc) for j in group})
            continue
        seconds = (time.time() - started) / len(group)
        for job in group:
            finished[id(job)].seconds = seconds
    return [finished[id(job)] for job in jobs]



def _train_with_adapter(model: LoadedModel, verbalizer: Verbalizer, job: PromptJob, examples: FewShotSplit,
                        progress: bool, desc: str) -> FinishedJob:
    """Train ``job``'s prompt with fresh low-rank adapters on the frozen model (the adapters at their own learning
    rate), keeping the best epoch's adapter weights; the model is as it was afterwards."""
    training = dataclasses.replace(job.training, model_lr=job.adapter.lr)
    with attached_lora(model, job.adapter, seed=job.training.seed) as adapters:
        [result] = train_prompts(model, verbalizer, [examples], [job.prompt], [training], initials=[job.initial],
                                 progress=progress, desc=desc, adapters=list(adapters.values()))
        weights = lora_weights(model) if not isinstance(result, TrainingDiverged) else None
    return FinishedJob(job, examples, result, adapter_weights=weights)


class TrainsPrompts:
    """How a prompt classifier is trained: the Python API's ``train``, the runner's ``fit_many`` (requests grouped
    by label words, language and shots, their members' jobs through :func:`train_prompt_jobs`), and the classifier
    of each finished job. A mixin of :class:`~xlspt.classifiers.PromptClassifier`."""

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
    ) -> Self:
        """Draw ``shots`` examples per class of ``train_language`` and train a prompt on them.

        ``recipe``: the named settings (:mod:`~xlspt.classifiers.recipes`) that fill every argument among
        ``shots``, ``prompt``, ``ensemble`` and ``calibration`` not given; by default the product's best measured
        one (``quality``: 8 reparameterized prompts, content-free calibration); ``"quality-lora"`` for 4 prompts
        with low-rank adapters (a :class:`~xlspt.classifiers.LoraClassifier`), ``"study"`` for the study's single
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
            lora = lora or chosen.get("lora")
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
        method_class = classifier_class(Method.LORA) if lora is not None else cls
        with muted(not (progress and seeds)):  # the API says which members train only for an ensemble it shows
            [clf] = method_class.fit_many(model, data, [request], progress=progress, desc="training", seeds=seeds)
        return clf

    @classmethod
    def fit_many(
        cls, model: LoadedModel, data: TaskData, requests: Sequence[FitRequest], *, progress: bool = True,
        raise_errors: bool = True, desc: str | None = None, seeds: list[int] | None = None,
    ) -> list["Self | BaseException"]:
        """Train the prompts of ``requests`` through :func:`~xlspt.classifiers.training.train_prompt_jobs`, which
        groups them into passes; each request gets its classifier (its ensemble's vote) or the error that stopped it.

        ``seeds``: the members' seeds of a single request (default: ``seed`` to ``seed + ensemble - 1``).
        ``desc``: the progress bar's label, ``{n}`` the number of prompts trained together (default:
        ``training x{n}``, or ``training with the model`` for a request that trains the model too).
        """
        out: list[Self | BaseException | None] = [None] * len(requests)
        by_words: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            words = tuple(sorted((request.label_words or {}).items()))
            by_words.setdefault((request.train_language, request.shots, words, request.allow_first_subtoken), []).append(i)
        for indices in by_words.values():
            try:
                outcomes = cls._train_requests(model, data, [requests[i] for i in indices], progress=progress,
                                               raise_errors=raise_errors, desc=desc, seeds=seeds)
            except Exception as exc:  # one bad group (label words, a sample) is that group's outcome
                if raise_errors:
                    raise
                outcomes = [exc] * len(indices)
            for i, outcome in zip(indices, outcomes):
                out[i] = outcome
        return out  # type: ignore[return-value]

    @classmethod
    def _train_requests(cls, model, data, requests: list[FitRequest], *, progress, raise_errors, desc, seeds):
        """Requests that share label words, language and shots: their members' jobs trained in one call."""
        first = requests[0]
        verbalizer = build_verbalizer(model, first.label_words, first.allow_first_subtoken, data.labels(first.train_language))
        jobs = [_member_jobs(r, seeds) for r in requests]
        desc = desc or ("training with the model" if first.changes_model else "training x{n}")
        done = train_prompt_jobs(model, data, verbalizer, [j for group in jobs for j in group],
                                 train_language=first.train_language, shots=first.shots, progress=progress, desc=desc,
                                 raise_errors=raise_errors)
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
            # a prompt trained with the model is useless without the model's weights, which are not kept
            if (isinstance(error, TrainingDiverged) and error.best is not None and len(mine) == 1
                    and not request.changes_model and request.lora is None):
                error.kept = cls.from_training(model, verbalizer, data, mine_done[0].examples, error.best,
                                              group[0].training, train_language=first.train_language, shots=first.shots,
                                              allow_first_subtoken=first.allow_first_subtoken,
                                              sample_seed=group[0].sample_seed)
                error.kept.metadata.diverged = str(error)
            if raise_errors:
                raise error
            outcomes.append(error)
        return outcomes

    @classmethod
    def from_jobs(
        cls, model: LoadedModel, data: TaskData, verbalizer: Verbalizer, done: Sequence[FinishedJob], *,
        train_language: str, shots: int, allow_first_subtoken: bool = False,
    ) -> list["Self | BaseException"]:
        """Each finished training job as a classifier, or the error that stopped it."""
        out: list[Self | BaseException] = []
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
    ) -> Self:
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
