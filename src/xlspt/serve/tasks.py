"""The tasks one server hosts on one frozen model, and how a batch of requests is scored in shared passes.

A task is a saved classifier (a prompt, an ensemble or a probe) under a name. Every task must be
made for the loaded model (its sidecar's model signature and dtype) or the server refuses to start.

:meth:`TaskSet.score` takes the requests of one batch together: requests that ask for the same
tasks (of the same read-out settings: maximum length, special tokens) are read in one pass over
their texts, batched by length (:func:`~xlspt.evaluate.readout_states`: each text's states computed
once, the prompts of all those tasks packed after them), so no text runs a prompt it was not asked
for. Each request is then calibrated on its own rows only, so that ``batch`` calibration never sees
another client's texts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from ..calibration import Protocol
from ..classifiers import Classifier, PromptClassifier, classifier_class, saved_method
from ..engine import Engine
from ..errors import XlsptError
from ..evaluate import Calibrator, Scorer, readout_states, scored_predictions
from ..hub import resolve_pretrained
from ..layout import PROBE_SIDECAR, PROMPT_SIDECAR, RESULTS_FILE
from ..pipeline import LoadOptions

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RequestError(XlsptError):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def task_sources(tasks: Sequence[str] = (), folder: str | None = None) -> dict[str, str]:
    """Task names and where each is saved: ``NAME=DIR_OR_HUB_ID`` entries and the run folders inside ``folder``
    (named after their folder)."""
    sources: dict[str, str] = {}

    def add(name: str, where: str, option: str) -> None:
        if not _NAME.fullmatch(name):
            raise XlsptError(f"{option}: task name {name!r} must be letters, digits, '_', '.' or '-' (at most 64)")
        if name in sources:
            raise XlsptError(f"{option}: two tasks are named {name!r}: give each its own name")
        sources[name] = where

    for entry in tasks:
        name, sep, where = entry.partition("=")
        if not sep or not where:
            raise XlsptError(f"--task {entry!r}: write NAME=DIR_OR_HUB_ID, e.g. --task topics=runs/quickstart")
        add(name.strip(), where.strip(), "--task")
    if folder is not None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise XlsptError(f"--tasks {folder}: no such folder: pass a folder holding run folders")
        found = sorted(p for p in root.iterdir() if (p / PROMPT_SIDECAR).is_file() or (p / PROBE_SIDECAR).is_file())
        if not found:
            raise XlsptError(f"--tasks {folder} holds no run folder with a saved prompt or probe")
        for path in found:
            add(path.name, str(path), "--tasks")
    if not sources:
        raise XlsptError("no task to serve: give --task NAME=DIR (repeatable) or --tasks DIR")
    return sources


@dataclass
class Job:
    """One request's work: its texts, scored by each task it names."""

    texts: list[str]
    tasks: list[str]
    lang: str | None = None
    unlabeled: list[str] = field(default_factory=list)
    top_k: int | None = None
    min_confidence: float | None = None

    @property
    def size(self) -> int:
        """Texts it brings to a pass: its texts and its unlabeled ones."""
        return len(self.texts) + len(self.unlabeled)


@dataclass(eq=False)
class HostedTask:
    """A saved classifier served under ``name``; ``calibrator`` scores a prompt's members with its protocol."""

    name: str
    folder: Path
    classifier: Classifier
    calibrator: Calibrator | None = None
    results: list[dict] | None = None

    @property
    def is_prompt(self) -> bool:
        return isinstance(self.classifier, PromptClassifier)

    @property
    def protocol(self) -> Protocol | None:
        return self.classifier.calibration.protocol if self.is_prompt else None

    @property
    def protocol_name(self) -> str:
        return self.classifier.protocol_name if self.is_prompt else "probe baseline"

    @property
    def pass_key(self) -> tuple:
        """Tasks with equal keys are read in one pass: prompts that read text alike; a probe alone."""
        readout = self.classifier.readout
        return ("prompt", readout.max_length, readout.special_tokens.value) if self.is_prompt else ("probe", self.name)

    def check(self, job: Job) -> None:
        """Refuse what this task cannot answer, before the request waits for a pass."""
        if not self.is_prompt:
            if job.unlabeled:
                raise RequestError(422, f"task {self.name!r} is a probe, which takes no calibration: drop 'unlabeled'")
            return
        calibration = self.classifier.calibration
        if calibration.protocol is Protocol.UNLABELED and not job.unlabeled:
            raise RequestError(422, f"task {self.name!r} calibrates with the label prior of unlabeled texts of the "
                                    f"language, and none were saved with it: send some in 'unlabeled' (with 'lang')")
        if calibration.protocol is Protocol.BATCH and len(job.texts) < calibration.min_batch:
            raise RequestError(422, f"task {self.name!r} calibrates on the texts of the request, and {len(job.texts)} "
                                    f"are too few (at least {calibration.min_batch}): send more texts at once")

    def describe(self) -> dict:
        clf = self.classifier
        return {"name": self.name, "method": clf.method.value, "labels": list(clf.labels),
                "base_model": clf.metadata.model, "dtype": clf.metadata.dtype, "protocol": self.protocol_name,
                "prompts": clf.size, "max_length": clf.readout.max_length, "results": self.results}


def _card_results(folder: Path) -> list[dict] | None:
    """The per-language results its model card shows (the vote of an ensemble), or ``None`` when it has none."""
    path = folder / RESULTS_FILE
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    if "member" in table:
        table = table[table["member"].astype(str) == "ensemble"]
    columns = [c for c in ("language", "accuracy", "macro_f1", "n", "protocol") if c in table]
    table = table[columns].astype(object)
    return table.where(table.notna(), None).to_dict(orient="records")  # JSON has no NaN


class TaskSet:
    """Named classifiers on one loaded model, scored together."""

    def __init__(self, tasks: Mapping[str, HostedTask], batch_size: int = 32):
        self.tasks = dict(tasks)
        self.batch_size = batch_size
        first = next(iter(self.tasks.values())).classifier
        self.model = first.model

    # ------------------------------------------------------------ loading

    @staticmethod
    def check_sources(sources: Mapping[str, str], load: LoadOptions = LoadOptions()) -> dict[str, Path]:
        """Each task's local folder, its sidecar read; refuses tasks of different models (no model is loaded)."""
        folders, models = {}, {}
        for name, where in sources.items():
            try:
                folder = resolve_pretrained(where)
                sidecar = classifier_class(saved_method(folder)).load_sidecar(folder)
            except XlsptError as exc:
                raise XlsptError(f"task {name!r}: {exc}") from None
            folders[name] = folder.parent if folder.is_file() else folder
            models[name] = (sidecar.model, sidecar.dtype)
        if load.model is None and len({m for m, _ in models.values()}) > 1:
            listed = ", ".join(f"{n} on {m!r}" for n, (m, _) in models.items())
            raise XlsptError(f"these tasks were made for different models ({listed}): serve each model's tasks with its own server")
        if load.dtype is None and len({d for _, d in models.values()}) > 1:
            listed = ", ".join(f"{n} in {d}" for n, (_, d) in models.items())
            raise XlsptError(f"these tasks were trained in different dtypes ({listed}): serve them separately, "
                             "or choose one with --dtype")
        return folders

    @classmethod
    def load(cls, sources: Mapping[str, str], load: LoadOptions = LoadOptions(), batch_size: int = 32) -> "TaskSet":
        """Load the model once (from the first task's sidecar, or ``load.model``) and every task on it;
        ``batch_size`` texts per forward pass."""
        folders = cls.check_sources(sources, load)
        tasks: dict[str, HostedTask] = {}
        model = None
        for name, folder in folders.items():
            try:
                clf = load.load(str(folder)) if model is None else classifier_class(saved_method(folder)).load(folder, model)
                model = clf.model
                tasks[name] = HostedTask(name, folder, clf, _calibrator(clf, batch_size), _card_results(folder))
            except (XlsptError, pd.errors.ParserError) as exc:
                raise XlsptError(f"task {name!r}: {exc}") from None
        return cls(tasks, batch_size)

    def describe(self) -> list[dict]:
        return [task.describe() for task in self.tasks.values()]

    def check(self, job: Job) -> None:
        """Refuse a request that names an unknown task or that a task cannot answer (a :class:`RequestError`)."""
        for name in job.tasks:
            if name not in self.tasks:
                raise RequestError(404, f"unknown task {name!r}: this server hosts {', '.join(self.tasks)} (GET /v1/tasks)")
            self.tasks[name].check(job)
        if job.unlabeled and not any(self.tasks[n].protocol is Protocol.UNLABELED for n in job.tasks):
            raise RequestError(422, "'unlabeled' is read by tasks calibrated with unlabeled texts only, and none of "
                                    f"{', '.join(job.tasks)} is: drop it")

    # ------------------------------------------------------------ scoring

    @torch.no_grad()
    def score(self, jobs: Sequence[Job]) -> list[dict[str, pd.DataFrame] | RequestError]:
        """Each job's scored predictions per task it names (columns of :func:`~xlspt.evaluate.scored_predictions`),
        or the error that refused it; the tasks read alike share one pass over all jobs' texts."""
        answers: list[dict[str, pd.DataFrame] | RequestError] = [{} for _ in jobs]
        passes: dict[tuple, list[int]] = {}  # the tasks of one pass -> the jobs that ask for exactly those
        for i, job in enumerate(jobs):
            by_key: dict[tuple, list[str]] = {}
            for name in job.tasks:
                by_key.setdefault(self.tasks[name].pass_key, []).append(name)
            for names in by_key.values():
                passes.setdefault(tuple(sorted(names)), []).append(i)
        for names, asked in passes.items():
            group = [self.tasks[n] for n in names]
            needs_unlabeled = any(t.protocol is Protocol.UNLABELED for t in group)
            rows = _Rows()
            for i in asked:
                rows.add(jobs[i].texts)
                if needs_unlabeled:
                    rows.add(jobs[i].unlabeled)
            for task, scores_of in self._scorers(group, rows.texts):
                for i in asked:
                    job = jobs[i]
                    if isinstance(answers[i], RequestError):
                        continue
                    try:
                        scores = scores_of(rows.of(job.texts), rows.of(job.unlabeled if needs_unlabeled else []), job.lang)
                        answers[i][task.name] = scored_predictions(job.texts, scores, task.classifier.labels,
                                                                   top_k=job.top_k, min_confidence=job.min_confidence)
                    except XlsptError as exc:
                        answers[i] = RequestError(422, f"task {task.name!r}: {exc}")
        return answers

    def _scorers(self, group: list[HostedTask], texts: list[str]):
        """``(task, scores_of(rows, unlabeled_rows, lang) -> [n, C])`` for each task of one pass over ``texts``."""
        first = group[0]
        if not first.is_prompt:  # a probe reads the text's own last state: its pass is its own
            scores = first.classifier.scores(texts, batch_size=self.batch_size)
            return [(first, lambda rows, _unlabeled, _lang: scores[rows])]
        prompts, spans = [], []
        for task in group:
            spans.append((len(prompts), task.classifier.size))
            prompts += task.classifier.prompts
        states = readout_states(self.model, prompts, texts, _scoring_readout(first.classifier, self.batch_size))  # [P, N, d]

        def scorer(task: HostedTask, start: int, size: int):
            own = states[start : start + size]
            return lambda rows, unlabeled, lang: task.calibrator.scores(
                Scorer(tuple(range(size)), task.classifier.calibration), own[:, rows], own[:, unlabeled], lang)

        return [(task, scorer(task, start, size)) for task, (start, size) in zip(group, spans)]


class _Rows:
    """Distinct texts of a batch, each read once; a request's texts map to their rows."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    @property
    def texts(self) -> list[str]:
        return list(self.index)

    def add(self, texts: Sequence[str]) -> None:
        for text in texts:
            self.index.setdefault(text, len(self.index))

    def of(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index[t] for t in texts], dtype=torch.long)


def _scoring_readout(clf: PromptClassifier, batch_size: int):
    """How the server reads text for a prompt: as it was trained, ``batch_size`` texts a pass, the cached engine
    (several prompts share each text's states)."""
    return dataclasses.replace(clf.readout, batch_size=batch_size, engine=Engine.CACHED)


def _calibrator(clf: Classifier, batch_size: int) -> Calibrator | None:
    """A prompt's calibrator, its content-free priors computed now so that the first request does not wait for them."""
    if not isinstance(clf, PromptClassifier):
        return None
    calibrator = Calibrator(clf.model, clf.verbalizer, clf.prompts, [Scorer(tuple(range(clf.size)), clf.calibration)],
                            _scoring_readout(clf, batch_size), reference=clf.reference)
    if clf.calibration.protocol is Protocol.CONTENT_FREE:
        calibrator.content_free(clf.calibration, None)
    return calibrator
