"""Zero-shot evaluation on target languages and prediction for new text.

Prediction is the argmax over the label words' logits at the read-out position; metrics
per language are accuracy and macro-F1 on the full test split.

Several prompts are scored from one pass over the text: each batch's text states are
computed once (:class:`~xlspt.engine.CachedTextEngine`) and every prompt then runs only its
own ``n`` positions. Prompts of different lengths truncate the text to different budgets;
since the model is causal, the states of a truncated text are a prefix of the states of the
longer text, so they are shared too. Only one batch of states is held at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch

from . import calibration as cal
from .calibration import CalibrationConfig, Protocol, content_free_texts
from .data.task import TaskData
from .engine import PromptPass, ReadoutConfig
from .engine.memory import release_freed_memory
from .engine.store import TextStateStore
from .errors import ConfigError, XlsptError
from .models.loading import LoadedModel
from .progress import checkpoint, interactive, line as progress_line, progress_bar
from .results import language_result, results_table
from .results.metrics import prediction_rows
from .verbalizer import Verbalizer


@torch.no_grad()
def readout_states(
    loaded: LoadedModel,
    prompts: torch.Tensor | Sequence[torch.Tensor],
    texts: Sequence[str],
    readout: ReadoutConfig = ReadoutConfig(),
    *,
    store: TextStateStore | None = None,
) -> torch.Tensor:
    """Final hidden states at the read-out position (what the LM head reads), float32 on the CPU.

    Args:
        prompts: one ``[n, d]`` prompt, or a sequence of prompts (lengths may differ).
        texts: ``N`` texts.
        readout: truncation, tokenization, batch size and the pass: ``cached`` (text states computed
            once for all prompts), ``naive`` (a full pass per prompt, the reference path), or ``auto``
            (:meth:`~xlspt.engine.Engine.for_scoring`: naive for one prompt, cached for several).
        store: keep the text states on disk and reuse them in later calls (implies the cached engine).

    Returns:
        ``[N, d]`` for one prompt, ``[P, N, d]`` for a sequence of ``P`` prompts.
    """
    single = isinstance(prompts, torch.Tensor)
    prompt_list = [prompts] if single else list(prompts)
    reading = PromptPass(loaded, texts, [p.shape[0] for p in prompt_list], max_length=readout.max_length,
                         special_tokens=readout.special_tokens)
    out = reading.states(prompt_list, readout.engine, readout.batch_size, store=store)
    return out[0] if single else out


@torch.no_grad()
def states_to_logits(loaded: LoadedModel, verbalizer: Verbalizer, states: torch.Tensor) -> torch.Tensor:
    """``[..., d]`` read-out states -> ``[..., W]`` logits of the verbalizer's label-word tokens (float32, CPU).

    :meth:`Verbalizer.class_logits` turns them into class logits (the same, with one word per class).
    """
    label_ids = torch.tensor(verbalizer.token_ids, device=loaded.device)
    flat = states.reshape(-1, states.shape[-1]).to(loaded.device)
    logits = torch.cat([loaded.adapter.logits(loaded.model, chunk, label_ids).float().cpu() for chunk in flat.split(4096)])
    return logits.view(*states.shape[:-1], len(label_ids))


def label_logits(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: torch.Tensor | Sequence[torch.Tensor],
    texts: Sequence[str],
    readout: ReadoutConfig = ReadoutConfig(),
    *,
    store: TextStateStore | None = None,
) -> torch.Tensor:
    """Label-word logits at the read-out position: ``[N, W]`` for one prompt, ``[P, N, W]`` for several
    (the arguments of :func:`readout_states`)."""
    return states_to_logits(loaded, verbalizer, readout_states(loaded, prompts, texts, readout, store=store))


#: ``(texts, readout, store) -> [P, N, d]``: the read-out states of every prompt of a classifier on ``texts``.
ReadStates = Callable[[Sequence[str], ReadoutConfig, "TextStateStore | None"], torch.Tensor]


@dataclass(frozen=True)
class Vote:
    """A vote: which prompts take part (an ensemble's members, or one prompt alone) and how their scores are
    calibrated. It scores nothing itself: a :class:`Calibrator` scores it."""

    members: tuple[int, ...]
    calibration: CalibrationConfig = CalibrationConfig()


class Calibrator:
    """Class log-probabilities of votes (:class:`Vote`), each calibrated by its protocol (see :mod:`xlspt.calibration`).

    Content-free priors are computed once for all prompts, from content-free inputs only.
    ``reference``: the training language's read-out statistics per prompt, for ``standardize``.
    """

    def __init__(self, loaded: LoadedModel, verbalizer: Verbalizer, prompts: Sequence[torch.Tensor],
                 votes: Sequence[Vote], readout: ReadoutConfig = ReadoutConfig(), *,
                 reference: cal.StateStatistics | None = None, store: TextStateStore | None = None,
                 read: "ReadStates | None" = None):
        self.loaded, self.verbalizer, self.votes = loaded, verbalizer, list(votes)
        self.read = read or (lambda texts, readout, store: readout_states(loaded, self.prompts, texts, readout, store=store))
        self.reference = reference
        for vote in self.votes:  # refused before any text is read
            vote.calibration.check_inputs(None, 1, reference is not None)
        self.prompts, self.readout, self.store = list(prompts), readout, store
        self._content_free: dict[str | None, torch.Tensor] = {}  # per script (None: any script)

    def content_free(self, calibration: CalibrationConfig, language: str | None) -> torch.Tensor:
        """``[P, M, C]`` log-probabilities of content-free inputs (in ``language``'s script where asked and known)."""
        script = cal.script_of(language) if calibration.by_script and language else None
        key = (script, calibration.content_free_texts)
        if key not in self._content_free:
            texts = content_free_texts(self.loaded.tokenizer, calibration.content_free_texts, script=script)
            self._content_free[key] = self.log_probs(self.read(texts, self.readout, self.store))
        return self._content_free[key]

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """``[P, N, d]`` read-out states -> ``[P, N, C]`` class log-probabilities."""
        return cal.log_probs(self.verbalizer.class_logits(states_to_logits(self.loaded, self.verbalizer, states)))

    def scores(self, vote: Vote, scored: torch.Tensor, unlabeled: torch.Tensor | None = None,
               language: str | None = None) -> torch.Tensor:
        """``[N, C]`` ensemble log-probabilities of ``vote`` from all prompts' ``[P, N, d]`` read-out states.

        ``unlabeled``: ``[P, M, d]`` states of unlabeled text of the same language (protocol ``unlabeled``).
        ``language``: the texts' language code, if known (its script serves ``content-free``).
        """
        members = list(vote.members)
        calibration = vote.calibration
        protocol = calibration.protocol
        scored = scored[members]
        calibration.check_inputs(scored.shape[1], 0 if unlabeled is None else unlabeled.shape[1], self.reference is not None)
        if protocol is Protocol.UNLABELED:
            unlabeled = unlabeled[members]
        if calibration.standardize:
            own = cal.StateStatistics.of(unlabeled if protocol is Protocol.UNLABELED else scored)
            reference = cal.StateStatistics(self.reference.mean[members], self.reference.std[members])
            scored = own.standardize_to(scored, reference)
            if unlabeled is not None and protocol is Protocol.UNLABELED:
                unlabeled = own.standardize_to(unlabeled, reference)
        logp = self.log_probs(scored)
        prior = None
        if calibration.prior:
            if protocol is Protocol.CONTENT_FREE:
                prior = cal.log_prior(self.content_free(calibration, language)[members])
            elif protocol is Protocol.UNLABELED:
                prior = cal.log_prior(self.log_probs(unlabeled))
            elif protocol is Protocol.BATCH:
                prior = cal.log_prior(logp)
        return cal.combine(logp, prior)


def build_calibrator(loaded: LoadedModel, verbalizer: Verbalizer, prompts: Sequence[torch.Tensor],
                     votes: Sequence[Vote], readout: ReadoutConfig = ReadoutConfig(), *,
                     reference: cal.StateStatistics | None = None, store: TextStateStore | None = None,
                     read: "ReadStates | None" = None) -> Calibrator:
    """The :class:`Calibrator` of ``prompts`` (``[n_i, d]``) for ``votes``: every scoring path builds its calibrators
    here (the classifier layer through :meth:`~xlspt.classifiers.PromptClassifier.calibrator`). ``read``: how the
    prompts read texts, where it is not :func:`readout_states` on the model as it is (prompts with adapters)."""
    return Calibrator(loaded, verbalizer, prompts, votes, readout, reference=reference, store=store, read=read)


def reference_statistics(loaded: LoadedModel, prompts: Sequence[torch.Tensor], texts: Sequence[str],
                         readout: ReadoutConfig = ReadoutConfig()) -> cal.StateStatistics:
    """Read-out mean and spread ``[P, d]`` of ``prompts`` on unlabeled texts of the training language."""
    return cal.StateStatistics.of(readout_states(loaded, list(prompts), list(texts), readout))


def score_texts(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: Sequence[torch.Tensor],
    texts: Sequence[str],
    readout: ReadoutConfig = ReadoutConfig(),
    *,
    calibration: CalibrationConfig = CalibrationConfig(),
    unlabeled_texts: Sequence[str] = (),
    reference: cal.StateStatistics | None = None,
    language: str | None = None,
) -> torch.Tensor:
    """``[N, C]`` class log-probabilities of an ensemble of ``prompts`` (one prompt: an ensemble of one).

    ``unlabeled_texts`` (protocol ``unlabeled``) are read in the same pass as ``texts``; ``language``
    (a code such as ``ory_Orya``) lets ``content-free`` use the language's script.
    """
    vote = Vote(tuple(range(len(prompts))), calibration)
    calibrator = build_calibrator(loaded, verbalizer, prompts, [vote], readout, reference=reference)
    extra = list(unlabeled_texts) if calibration.protocol is Protocol.UNLABELED else []
    states = readout_states(loaded, list(prompts), [*texts, *extra], readout)
    return calibrator.scores(vote, states[:, : len(texts)], states[:, len(texts) :], language)


def predict(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: torch.Tensor | Sequence[torch.Tensor],
    texts: Sequence[str],
    readout: ReadoutConfig = ReadoutConfig(),
    *,
    calibration: CalibrationConfig = CalibrationConfig(),
    unlabeled_texts: Sequence[str] = (),
    reference: cal.StateStatistics | None = None,
    language: str | None = None,
) -> list[str]:
    """The predicted class of each text (an ensemble's vote when several prompts are given)."""
    if not texts:
        return []
    prompts = [prompts] if isinstance(prompts, torch.Tensor) else list(prompts)
    scores = score_texts(loaded, verbalizer, prompts, texts, readout, calibration=calibration,
                         unlabeled_texts=unlabeled_texts, reference=reference, language=language)
    return [verbalizer.labels[i] for i in scores.argmax(dim=1).tolist()]


def _scored_split(data: TaskData, lang: str, split: str, limit: int, trained_labels: Sequence[str] | None) -> pd.DataFrame:
    """``lang``'s ``split`` (its first ``limit`` texts; 0: all), refused if it holds a class the prompt never saw."""
    frame = data.split(lang, split)
    if limit:
        frame = frame.head(limit)
    stray = sorted(set(frame["label"]) - set(trained_labels)) if trained_labels is not None else []
    if stray:
        raise XlsptError(f"the {lang} {split} split has the label {stray[0]!r}, which the prompt was not trained on: "
                         f"its classes are {', '.join(trained_labels)}")
    return frame


def evaluate_each_language(
    loaded: LoadedModel,
    data: TaskData,
    languages: Sequence[str],
    split: str,
    labels: Sequence[Sequence[str]],
    protocols: Sequence[str],
    score_language: Callable[[str, pd.DataFrame], Sequence[torch.Tensor]],
    *,
    desc: str = "evaluating",
    progress: bool = True,
    trained_labels: Sequence[str] | None = None,
    headline: Sequence[int] | None = None,
    limit: int = 0,
) -> list[pd.DataFrame]:
    """The per-language loop of every evaluation: one results table per vote, in the order given.

    Args:
        labels, protocols: each vote's class order and the protocol its rows name.
        score_language: ``(language, its split's frame) -> [N, C]`` class scores of every vote,
            from one read of the language's text.
        trained_labels: the classes the prompts were trained on; a gold label outside them is an
            error (``None``: not checked).
        headline: the votes whose mean accuracy a language's log line shows. ``None``: no
            per-language report (neither the language on the bar nor a log line).
        limit: score only the first ``limit`` texts of each language's split (0: all).

    Every scored text rides along in each table's ``attrs["predictions"]`` (:func:`prediction_rows`).
    """
    rows: list[list[dict]] = [[] for _ in protocols]
    per_class: list[list[dict]] = [[] for _ in protocols]
    confusions: list[dict] = [{} for _ in protocols]
    predictions: list[list[dict]] = [[] for _ in protocols]
    bar = progress_bar(languages, desc=desc, unit="lang", disable=not progress)
    for lang in bar:
        if headline is not None:
            bar.set_postfix(lang=lang)
        frame = _scored_split(data, lang, split, limit, trained_labels)
        gold = frame["label"].tolist()
        scores = score_language(lang, frame)
        for j, (own, protocol) in enumerate(zip(labels, protocols)):
            predicted = [own[i] for i in scores[j].argmax(dim=1).tolist()]
            row, classes, matrix = language_result(lang, gold, predicted, own, protocol)
            predictions[j] += prediction_rows(lang, frame["text"].tolist(), gold, predicted, own, scores[j], protocol)
            rows[j].append(row)
            per_class[j] += classes
            confusions[j][lang] = matrix
        release_freed_memory()  # the read-out states, the largest thing freed, went with score_language's call
        if headline is not None and progress and not interactive() and len(languages) > 1:  # no bar in a log file
            shown = [rows[j] for j in headline]
            mean = sum(r[-1]["accuracy"] for r in shown) / len(shown)
            progress_line(f"evaluated {lang} ({len(rows[0])}/{len(languages)}): accuracy {100 * mean:.1f}%"
                          f"{f' (mean of {len(shown)})' if len(shown) > 1 else ''}")
        checkpoint()
    return [results_table(loaded, own, r, c, m, p, limit)
            for own, r, c, m, p in zip(labels, rows, per_class, confusions, predictions)]


def evaluate_prompts(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: Sequence[torch.Tensor],
    data: TaskData,
    languages: Sequence[str],
    readout: ReadoutConfig = ReadoutConfig(),
    *,
    votes: Sequence[Vote] | None = None,
    split: str = "test",
    store: TextStateStore | None = None,
    reference: cal.StateStatistics | None = None,
    headline: Sequence[int] | None = None,
    progress: bool = True,
) -> list[pd.DataFrame]:
    """Per-language results of several votes (prompts alone or ensembles), reading each language's text once.

    Args:
        readout: how texts are read (:func:`readout_states`).
        votes: which prompts vote together and how they are calibrated; default: each prompt
            alone, uncalibrated (the study's zero-shot protocol).
        store: text states kept on disk (:class:`~xlspt.engine.store.TextStateStore`).
        reference: for votes that ``standardize``: the training language's statistics per prompt
            (:func:`reference_statistics`).
        headline: the votes whose mean accuracy the per-language log line shows (default: all).

    Returns one table per vote, in the order given, with columns ``language, accuracy,
    macro_f1, n, protocol``; its ``attrs`` hold the ``labels``, the ``per_class`` rows (precision,
    recall, F1 and support per language and class, as :func:`per_class_table` reads them) and each
    language's ``confusion`` counts ``[C, C]`` (gold rows, predicted columns; nested lists).
    """
    votes = list(votes) if votes is not None else [Vote((j,)) for j in range(len(prompts))]
    calibrator = build_calibrator(loaded, verbalizer, prompts, votes, readout, reference=reference, store=store)
    for s in votes:
        if s.calibration.protocol is Protocol.UNLABELED and s.calibration.unlabeled_split == split:
            raise ConfigError("unlabeled_split", f"is the split being scored ({split}): use another split's texts, or batch")
    unlabeled_splits = sorted({s.calibration.unlabeled_split for s in votes
                               if s.calibration.protocol is Protocol.UNLABELED})

    def score_language(lang: str, frame: pd.DataFrame) -> list[torch.Tensor]:
        # The unlabeled splits ride along after the scored texts, in the same read.
        extra = {name: data.split(lang, name)["text"].tolist() for name in unlabeled_splits}
        texts = frame["text"].tolist() + [t for name in unlabeled_splits for t in extra[name]]
        states = readout_states(loaded, list(prompts), texts, readout, store=store)
        unlabeled = _split_rows(states[:, len(frame) :], {name: len(part) for name, part in extra.items()})
        return [calibrator.scores(s, states[:, : len(frame)], unlabeled.get(s.calibration.unlabeled_split), lang)
                for s in votes]

    return evaluate_each_language(
        loaded, data, languages, split, [verbalizer.labels] * len(votes), [s.calibration.name for s in votes],
        score_language, progress=progress, trained_labels=verbalizer.labels,
        headline=headline if headline is not None else range(len(votes)),
    )


def _split_rows(states: torch.Tensor, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """``[P, sum(sizes), d]`` states -> ``{name: [P, size, d]}``, in the order of ``sizes``."""
    out, offset = {}, 0
    for name, size in sizes.items():
        out[name] = states[:, offset : offset + size]
        offset += size
    return out


def evaluate_languages(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompt: torch.Tensor,
    data: TaskData,
    languages: Sequence[str],
    **kwargs,
) -> pd.DataFrame:
    """Accuracy and macro-F1 of one ``prompt`` per language: columns ``language, accuracy, macro_f1, n``."""
    return evaluate_prompts(loaded, verbalizer, [prompt], data, languages, **kwargs)[0]
