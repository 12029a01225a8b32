"""The one scoring path: many requests to score texts, each by one classifier, answered in shared passes.

``predict``, ``evaluate``, the study's evaluation, ``serve`` and self-training all score through
:func:`score_requests`. It hands each method's requests to that method's batched primitive
(:meth:`~xlspt.classifiers.Classifier.score_requests`), which reads every distinct text once per
compatible group (one read-out pass for the prompts of all the classifiers asked), and then
calibrates each request on its own rows only: a ``batch`` calibration never sees another
request's texts. lm-evaluation-harness gathers its tasks' requests the same way.

The interface's other scoring methods (``scores``, ``predict``, ``classify``, ``evaluate``,
``evaluate_many``) are derived from that one primitive once, in :class:`ScoresInBatches`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd
import torch

from ..calibration import CalibrationConfig, Protocol
from ..engine.options import Engine
from ..errors import ConfigError, XlsptError
from ..evaluate import evaluate_each_language

if TYPE_CHECKING:
    from ..data.task import TaskData
    from ..engine.store import TextStateStore
    from .base import Classifier, Evaluation

logger = logging.getLogger(__name__)

#: The label of a text whose most probable class is below the asked minimum confidence.
ABSTAIN = "abstain"


@dataclass(frozen=True, eq=False)
class ScoreRequest:
    """Texts to score by one classifier, and how.

    Attributes:
        classifier: the classifier that scores (any registered method).
        texts: ``N`` texts.
        members: which of its requests vote (an ensemble's member indices; ``None``: all of them).
        calibration: how scores are corrected (``None``: the classifier's own).
        unlabeled: unlabeled texts of the same language (protocol ``unlabeled``; read in the same pass).
        language: the texts' language code (``ory_Orya``), if known: ``content-free`` uses its script.
        top_k, min_confidence: what :func:`scored_predictions` reports (checked here, once).
    """

    classifier: "Classifier"
    texts: Sequence[str]
    members: tuple[int, ...] | None = None
    calibration: CalibrationConfig | None = None
    unlabeled: Sequence[str] = ()
    language: str | None = None
    top_k: int | None = None
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        check_answer_options(self.top_k, self.min_confidence)


def check_answer_options(top_k: int | None, min_confidence: float | None) -> None:
    """Refuse a ``top_k`` below 1 or a ``min_confidence`` outside [0, 1] (one check for every caller)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise XlsptError(f"--top-k must be at least 1 (got {top_k})")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise XlsptError(f"--min-confidence must be a probability between 0 and 1 (got {min_confidence})")


@dataclass(frozen=True)
class PassOptions:
    """How a pass reads text. ``None``: as the classifier's saved read-out says.

    Attributes:
        batch_size: texts per forward pass.
        engine: the pass (:class:`~xlspt.engine.Engine`).
        store: keep text states on disk (:class:`~xlspt.engine.store.TextStateStore`; prompts only).
    """

    batch_size: int | None = None
    engine: Engine | str | None = None
    store: "TextStateStore | None" = field(default=None, compare=False)


def score_requests(requests: Sequence[ScoreRequest], options: PassOptions = PassOptions()) -> list[torch.Tensor]:
    """``[N_i, C_i]`` class log-probabilities of each request, in order.

    Requests go to their method's :meth:`~xlspt.classifiers.Classifier.score_requests`, all of a method at once,
    so that requests of one method that read text alike share passes. An error refuses the whole call.
    """
    out: list[torch.Tensor | None] = [None] * len(requests)
    by_method: dict[type, list[int]] = {}
    for i, request in enumerate(requests):
        by_method.setdefault(type(request.classifier), []).append(i)
    for method_class, indices in by_method.items():
        for i, scores in zip(indices, method_class.score_requests([requests[i] for i in indices], options)):
            out[i] = scores
    return out  # type: ignore[return-value]


def classify_requests(requests: Sequence[ScoreRequest], options: PassOptions = PassOptions()) -> list[pd.DataFrame]:
    """Each request's scored predictions (:func:`scored_predictions`, with its ``top_k`` and ``min_confidence``)."""
    scores = score_requests([r for r in requests if r.texts], options)
    answers, at = [], 0
    for request in requests:
        if request.texts:
            own, at = scores[at], at + 1
        else:
            own = torch.zeros(0, len(request.classifier.labels))
        answers.append(scored_predictions(list(request.texts), own, request.classifier.labels, top_k=request.top_k,
                                          min_confidence=request.min_confidence))
    return answers


def scored_predictions(
    texts: Sequence[str], scores: torch.Tensor, labels: Sequence[str], *, top_k: int | None = None,
    min_confidence: float | None = None,
) -> pd.DataFrame:
    """Each text's label with its probability over the label set, from ``[N, C]`` class scores.

    Columns ``text, label, probability`` and, with ``top_k``, ``top_k``: the ``k`` most probable
    labels as ``[{"label": ..., "probability": ...}, ...]``. Below ``min_confidence`` the label is
    ``"abstain"`` (the probability stays that of the most probable class).
    """
    check_answer_options(top_k, min_confidence)
    probs = torch.softmax(scores.float(), dim=1)  # an ensemble's mean log-probabilities are not normalized
    best_p, best = probs.max(dim=1)
    frame = pd.DataFrame({"text": list(texts), "label": [labels[i] for i in best.tolist()], "probability": best_p.tolist()})
    if min_confidence is not None:
        frame.loc[frame["probability"] < min_confidence, "label"] = ABSTAIN
    if top_k is not None:
        values, index = probs.topk(min(top_k, len(labels)), dim=1)
        frame["top_k"] = [[{"label": labels[j], "probability": v} for j, v in zip(row_i, row_v)]
                          for row_i, row_v in zip(index.tolist(), values.tolist())]
    return frame


class Rows:
    """Distinct texts of a pass, each read once; a request's texts map to their rows."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    @property
    def texts(self) -> list[str]:
        return list(self.index)

    def add(self, texts: Sequence[str]) -> None:
        for text in texts:
            self.index.setdefault(text, len(self.index))

    def of(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts)]`` row indices."""
        return torch.tensor([self.index[t] for t in texts], dtype=torch.long)


def passes(requests: Sequence[ScoreRequest], reads_alike) -> list[tuple[list[int], list[Any], Rows]]:
    """The passes that answer ``requests``: ``(request indices, distinct classifiers in order, rows)`` each.

    Requests on the same texts form a cluster; clusters that ask the same classifiers, which read text
    alike (``reads_alike(classifier)``: a hashable key), share one pass, so that no text runs a classifier no
    request on it asked for. A cluster's unlabeled texts ride along after its texts when one of its
    requests calibrates with them.
    """
    clusters: dict[tuple[str, ...], list[int]] = {}
    for i, request in enumerate(requests):
        clusters.setdefault(tuple(request.texts), []).append(i)
    grouped: dict[tuple, list[list[int]]] = {}
    for members in clusters.values():
        by_key: dict[Any, list[int]] = {}
        for i in members:
            by_key.setdefault(reads_alike(requests[i].classifier), []).append(i)
        for key, indices in by_key.items():
            asked = frozenset(id(requests[i].classifier) for i in indices)
            grouped.setdefault((key, asked), []).append(indices)
    out = []
    for cluster_list in grouped.values():
        indices = [i for cluster in cluster_list for i in cluster]
        classifiers = list({id(requests[i].classifier): requests[i].classifier for i in indices}.values())
        rows = Rows()
        for cluster in cluster_list:
            rows.add(requests[cluster[0]].texts)
            for i in cluster:
                if requests[i].unlabeled and calibration_of(requests[i]).protocol is Protocol.UNLABELED:
                    rows.add(requests[i].unlabeled)
        out.append((indices, classifiers, rows))
    return out


def calibration_of(request: ScoreRequest) -> CalibrationConfig:
    """The calibration a request asks for (the classifier's own by default; a classifier without one: zero-shot)."""
    return request.calibration or getattr(request.classifier, "calibration", None) or CalibrationConfig()


# ---------------------------------------------------------------- evaluation, from the same primitive

def evaluate_requests(
    requests: Sequence[ScoreRequest], data: "TaskData", languages: Sequence[str], *, split: str = "test",
    options: PassOptions = PassOptions(), progress: bool = True, headline: Sequence[int] | None = None,
    desc: str = "evaluating", limit: int = 0,
) -> list[pd.DataFrame]:
    """Per-language results of each request (columns ``language, accuracy, macro_f1, n, protocol``), every
    language's text read once for all of them (:func:`score_requests`).

    ``requests``: requests without texts (a classifier, its members that vote and a calibration); each language's
    ``split`` is scored by each, with the calibration's unlabeled split as its unlabeled texts.

    ``headline``: the requests whose mean accuracy the per-language log line shows (default: all). ``limit``: the
    first ``limit`` texts of each language's split only (0: all). Each table's ``attrs["predictions"]`` holds every
    scored text.
    """
    calibrations = [calibration_of(s) for s in requests]
    for calibration in calibrations:
        if calibration.protocol is Protocol.UNLABELED and calibration.unlabeled_split == split:
            raise ConfigError("unlabeled_split", f"is the split being scored ({split}): use another split's texts, or batch")
    labels = [tuple(s.classifier.labels) for s in requests]
    trained = labels[0] if len(set(labels)) == 1 else None

    def score_language(lang: str, frame: pd.DataFrame) -> list[torch.Tensor]:
        texts = frame["text"].tolist()
        unlabeled = {c.unlabeled_split: data.split(lang, c.unlabeled_split)["text"].tolist()
                     for c in sorted(calibrations, key=lambda c: c.unlabeled_split) if c.protocol is Protocol.UNLABELED}
        return score_requests([dataclasses.replace(s, texts=texts, unlabeled=unlabeled.get(c.unlabeled_split, ()), language=lang)
                               for s, c in zip(requests, calibrations)], options)

    return evaluate_each_language(
        requests[0].classifier.model, data, languages, split, [list(own) for own in labels],
        [s.classifier.protocol_of(c) for s, c in zip(requests, calibrations)], score_language, desc=desc,
        progress=progress, trained_labels=list(trained) if trained is not None else None,
        headline=headline if headline is not None else range(len(requests)), limit=limit,
    )


class ScoresInBatches:
    """``scores``, ``predict``, ``classify``, ``evaluate`` and ``evaluate_many``, derived once from the one primitive
    a method implements: ``score_requests(requests, options) -> [N_i, C_i]`` per request.

    Hooks a method may override: :meth:`protocol_of` (the name a results row gives its protocol),
    :meth:`marked_table`, :meth:`prepare_evaluation` (refusals or statistics before an evaluation),
    :meth:`pass_engine` and :meth:`scoring_line` (what a study's record and log say).
    """

    #: the progress bar's label while evaluating
    evaluation_desc = "evaluating"
    #: whether a request may ask for a calibration (a probe is scored as it is)
    takes_calibration = True
    #: whether classifiers of the method share training and scoring passes (prompts and probes do)
    works_together = True

    @classmethod
    def score_requests(cls, requests: Sequence[ScoreRequest], options: PassOptions = PassOptions()) -> list[torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------ hooks

    def protocol_of(self, calibration: CalibrationConfig) -> str:
        """The ``protocol`` a results row of this classifier names, scored with ``calibration``."""
        return calibration.name

    def marked_table(self, table: pd.DataFrame) -> pd.DataFrame:
        return table

    def protocol_label(self, calibration: CalibrationConfig | None = None) -> str:
        """The protocol its answers follow with ``calibration`` (default: its own), for a reader."""
        return (calibration or calibration_of(ScoreRequest(self, ()))).name

    def prepare_scoring(self, options: PassOptions = PassOptions()) -> None:
        """Work every later request would otherwise wait for (a server calls it when it loads the classifier)."""

    def prepare_evaluation(self, data: "TaskData", languages: Sequence[str], calibration: CalibrationConfig,
                           options: PassOptions = PassOptions()) -> None:
        """What must hold, or be estimated, before ``languages`` are evaluated with ``calibration``."""

    @classmethod
    def pass_engine(cls, classifiers: Sequence["Classifier"], engine: Engine | str | None = None) -> str:
        """The engine the evaluation of ``classifiers`` together ran (a run record keeps it)."""
        return Engine(engine or Engine.AUTO).for_scoring(sum(c.size for c in classifiers)).value

    @classmethod
    def scoring_line(cls, classifiers: Sequence["Classifier"], languages: Sequence[str]) -> str:
        return f"scoring {len(classifiers)} classifier(s) on {len(languages)} languages"

    # ------------------------------------------------------------ derived

    def scores(self, texts: Sequence[str], *, calibration: CalibrationConfig | None = None,
               unlabeled_texts: Sequence[str] = (), language: str | None = None, batch_size: int = 32,
               engine: str = "auto") -> torch.Tensor:
        """``[N, C]`` class log-probabilities (an ensemble's vote), calibrated by ``calibration`` (default: the
        classifier's own). ``unlabeled_texts`` serve the ``unlabeled`` protocol; ``language`` (e.g. ``ory_Orya``)
        lets ``content-free`` draw its inputs in the language's script."""
        [scores] = score_requests([ScoreRequest(self, list(texts), None, calibration, list(unlabeled_texts), language)],
                                  PassOptions(batch_size, engine))
        return scores

    def predict(self, texts: Sequence[str], batch_size: int = 32, engine: str = "auto", *,
                calibration: CalibrationConfig | None = None, unlabeled_texts: Sequence[str] = (),
                language: str | None = None) -> list[str]:
        """The predicted class of each text."""
        if not texts:
            return []
        scores = self.scores(texts, calibration=calibration, unlabeled_texts=unlabeled_texts, language=language,
                             batch_size=batch_size, engine=engine)
        return [self.labels[i] for i in scores.argmax(dim=1).tolist()]

    def classify(self, texts: Sequence[str], *, top_k: int | None = None, min_confidence: float | None = None,
                 calibration: CalibrationConfig | None = None, unlabeled_texts: Sequence[str] = (),
                 language: str | None = None, batch_size: int = 32, engine: str = "auto") -> pd.DataFrame:
        """Scored predictions: columns ``text, label, probability`` (over the label set), and ``top_k`` (the ``k``
        most probable labels with their probabilities) when asked; below ``min_confidence`` the label is
        ``"abstain"``."""
        [frame] = classify_requests([ScoreRequest(self, list(texts), None, calibration, list(unlabeled_texts), language,
                                                  top_k, min_confidence)], PassOptions(batch_size, engine))
        return frame

    def evaluate(self, data: "TaskData", languages: Sequence[str], *, batch_size: int = 32, engine: str = "auto",
                 calibration: CalibrationConfig | None = None, members: bool = False, progress: bool = True,
                 split: str = "test", limit: int = 0) -> pd.DataFrame:
        """Accuracy and macro-F1 per language on ``split``: columns ``language, accuracy, macro_f1, n, protocol``.

        With ``members`` an ensemble's table gets a ``member`` column: ``ensemble`` for the vote, ``0``... for
        each member alone (same protocol), all from one pass over the text. ``limit``: the first ``limit`` texts of
        each language only (0: all). ``table.attrs["predictions"]`` holds every scored text.
        """
        options = PassOptions(batch_size, engine)
        requests = [ScoreRequest(self, (), None, calibration)]
        self.prepare_evaluation(data, languages, calibration_of(requests[0]), options)
        if members and self.size > 1:
            requests += [ScoreRequest(self, (), (i,), calibration) for i in range(self.size)]
        tables = [self.marked_table(t) for t in evaluate_requests(requests, data, languages, split=split, options=options,
                                                                  progress=progress, desc=self.evaluation_desc, limit=limit)]
        if len(tables) == 1:
            return tables[0]
        names = ["ensemble", *[str(i) for i in range(self.size)]]
        return pd.concat([t.assign(member=name) for name, t in zip(names, tables)], ignore_index=True)

    @classmethod
    def evaluate_many(cls, classifiers: Sequence["Classifier"], data: "TaskData", languages: Sequence[str], *,
                      progress: bool = True, limit: int = 0) -> list["Evaluation"]:
        """Evaluate classifiers that read text alike together: one pass over each language's text for all; each
        votes with its own protocol, and an ensemble's members are scored alone too (same pass)."""
        from .base import Evaluation

        requests, spans = [], []
        for clf in classifiers:
            requests.append(ScoreRequest(clf, ()))
            clf.prepare_evaluation(data, languages, calibration_of(requests[-1]))
            spans.append((len(requests) - 1, clf.size))
            if clf.size > 1:
                requests += [ScoreRequest(clf, (), (j,)) for j in range(clf.size)]
        logger.info(cls.scoring_line(classifiers, languages))
        tables = evaluate_requests(requests, data, languages, progress=progress, headline=[at for at, _ in spans],
                                  desc=cls.evaluation_desc, limit=limit)  # each one's vote, not its members, on the log line
        engine = cls.pass_engine(classifiers)
        return [Evaluation(clf.marked_table(tables[at]),
                           [clf.marked_table(t) for t in tables[at + 1 : at + 1 + size]] if size > 1 else None, engine)
                for clf, (at, size) in zip(classifiers, spans)]
