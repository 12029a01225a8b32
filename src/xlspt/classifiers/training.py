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
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..data.sampling import FewShotSplit, sample_few_shot
from ..data.task import TaskData
from ..engine.options import Engine
from ..models.loading import LoadedModel
from ..prompt import PromptConfig, SoftPrompt
from ..lora import LoraConfig, attached_lora, lora_weights
from ..train import TrainConfig, TrainingDiverged, TrainResult, train_prompts
from ..verbalizer import Verbalizer


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
    log: Callable[[str], None] = lambda message: None, raise_errors: bool = True,
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
        log(f"training {f'{len(group)} prompts together ({names})' if len(group) > 1 else f'a prompt ({names})'} "
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
