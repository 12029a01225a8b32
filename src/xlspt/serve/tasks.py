"""The tasks one server hosts on one frozen model, and how a batch of requests is scored in shared passes.

A task is a saved classifier (a prompt, an ensemble or a probe) under a name. Every task must be
made for the loaded model (its sidecar's model signature and dtype) or the server refuses to start.

:meth:`TaskSet.score` takes the requests of one batch together, through the one scoring path
(:func:`~xlspt.classifiers.score_requests`): requests that ask for the same tasks (of the same
read-out settings: maximum length, special tokens) are read in one pass over their texts, batched by
length (each text's states computed once, the prompts of all those tasks packed after them), so no
text runs a prompt it was not asked for. Each request is then calibrated on its own rows only, so
that ``batch`` calibration never sees another client's texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from ..calibration import Protocol
from ..classifiers import Classifier, PassOptions, ScoreRequest, classifier_class, classify_requests, saved_method
from ..errors import XlsptError
from ..hub import resolve_pretrained
from ..layout import RESULTS_FILE
from ..pipeline import LoadOptions
from ..sidecar import Sidecar

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
        found = sorted(p for p in root.iterdir() if p.is_dir() and Sidecar.kind_of(p) is not None)
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
    """A saved classifier served under ``name``."""

    name: str
    folder: Path
    classifier: Classifier
    results: list[dict] | None = None

    @property
    def protocol(self) -> Protocol:
        return self.classifier.calibration.protocol

    @property
    def protocol_name(self) -> str:
        return self.classifier.protocol_label()

    def check(self, job: Job) -> None:
        """Refuse what this task cannot answer, before the request waits for a pass."""
        clf = self.classifier
        if not clf.takes_calibration:
            if job.unlabeled:
                raise RequestError(422, f"task {self.name!r} is a probe, which takes no calibration: drop 'unlabeled'")
            return
        try:
            clf.calibration.check_inputs(len(job.texts), len(job.unlabeled), getattr(clf, "reference", None) is not None)
        except XlsptError as exc:
            raise RequestError(422, f"task {self.name!r}: {exc}") from None

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
        return {name: folder for name, (folder, _) in TaskSet.sidecars(sources, load).items()}

    @staticmethod
    def sidecars(sources: Mapping[str, str], load: LoadOptions = LoadOptions()) -> dict[str, tuple[Path, Sidecar]]:
        """Each task's local folder and sidecar; refuses tasks of different models or dtypes (no model is loaded)."""
        found, models = {}, {}
        for name, where in sources.items():
            try:
                folder = resolve_pretrained(where)
                sidecar = classifier_class(saved_method(folder)).load_sidecar(folder)
            except XlsptError as exc:
                raise XlsptError(f"task {name!r}: {exc}") from None
            found[name] = (folder.parent if folder.is_file() else folder, sidecar)
            models[name] = (sidecar.model, sidecar.dtype)
        if load.model is None and len({m for m, _ in models.values()}) > 1:
            listed = ", ".join(f"{n} on {m!r}" for n, (m, _) in models.items())
            raise XlsptError(f"these tasks were made for different models ({listed}): give each model's tasks a server "
                             "(or a label job) of their own")
        if load.dtype is None and len({d for _, d in models.values()}) > 1:
            listed = ", ".join(f"{n} in {d}" for n, (_, d) in models.items())
            raise XlsptError(f"these tasks were trained in different dtypes ({listed}): serve them separately, "
                             "or choose one with --dtype")
        return found

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
                clf.prepare_scoring(_pass_options(batch_size))  # content-free priors now, not at the first request
                tasks[name] = HostedTask(name, folder, clf, _card_results(folder))
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
        """Each job's scored predictions per task it names (columns of :func:`~xlspt.classifiers.scored_predictions`),
        or the error that refused it; the tasks read alike share one pass over all jobs' texts."""
        answers: list[dict[str, pd.DataFrame] | RequestError] = [{} for _ in jobs]
        requests, owners = [], []
        for i, job in enumerate(jobs):
            for name in sorted(job.tasks):  # the order of prompts packed into a pass: by name, as every job asks
                clf = self.tasks[name].classifier
                unlabeled = job.unlabeled if clf.takes_calibration and clf.calibration.protocol is Protocol.UNLABELED else []
                requests.append(ScoreRequest(clf, job.texts, None, None, unlabeled, job.lang, job.top_k, job.min_confidence))
                owners.append((i, name))
        try:
            frames = classify_requests(requests, _pass_options(self.batch_size))
        except XlsptError:  # one job's refusal must not refuse the others: score each job on its own
            frames = None
        if frames is None:
            for k, (i, name) in enumerate(owners):
                if isinstance(answers[i], RequestError):
                    continue
                try:
                    [answers[i][name]] = classify_requests([requests[k]], _pass_options(self.batch_size))
                except XlsptError as exc:
                    answers[i] = RequestError(422, f"task {name!r}: {exc}")
            return answers
        for (i, name), frame in zip(owners, frames):
            answers[i][name] = frame
        return answers


def _pass_options(batch_size: int) -> PassOptions:
    """How the server reads text: ``batch_size`` texts a pass, with the engine of each task's saved read-out, as
    ``xlspt predict`` does (``auto``: one prompt in a full pass, several from each text's cached states): the two
    engines agree to rounding only, which in bfloat16 on some CPUs (AMX) moves probabilities by a few hundredths."""
    return PassOptions(batch_size=batch_size)
