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

import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch

from . import calibration as cal
from .calibration import CalibrationConfig, Protocol, content_free_texts
from .data.task import TaskData
from .engine import CachedTextEngine, Engine, NaiveEngine, ReadoutConfig, batches_by_length, encode_texts
from .engine.memory import release_freed_memory
from .engine.store import TextStateStore
from .errors import ConfigError, XlsptError
from .models.loading import LoadedModel
from .progress import checkpoint, interactive, progress_bar
from .results import language_result, results_table
from .verbalizer import Verbalizer

#: Prompts of one length scored in one pass over the weights, up to this many (prompt, text) rows.
_ROWS_PER_PASS = 256


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
    out = torch.empty(len(prompt_list), len(texts), loaded.hidden_size)
    # Token ids per distinct prompt length; the shortest prompt leaves the longest text budget.
    ids_by_length = {n: encode_texts(loaded, texts, n, readout.max_length, readout.special_tokens)
                     for n in sorted({p.shape[0] for p in prompt_list})}
    if readout.engine.for_scoring(len(prompt_list), store is not None) is Engine.NAIVE:
        _naive_states(loaded, prompt_list, ids_by_length, readout.batch_size, out)
    else:
        _cached_states(loaded, prompt_list, ids_by_length, readout.batch_size, store, out)
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


def _naive_states(loaded, prompts, ids_by_length, batch_size, out) -> None:
    """A full pass per prompt and batch (the reference path)."""
    naive = NaiveEngine(loaded)
    for j, prompt in enumerate(prompts):
        ids = ids_by_length[prompt.shape[0]]
        for batch in batches_by_length([len(x) for x in ids], batch_size):
            out[j, batch] = naive.readout_hidden([ids[i] for i in batch], prompt).float().cpu()


def _cached_states(loaded, prompts, ids_by_length, batch_size, store, out) -> None:
    """Each batch's text once; then the prompts, as many as fit together in one pass.

    Where the model takes explicit positions, prompts of any lengths are packed into one pass,
    each reading its own truncation of the text (a prefix of the states). ALiBi models run the
    prompts of one length side by side.
    """
    base_ids = ids_by_length[min(ids_by_length)]
    prefix_ok = {n: all(ids == full[: len(ids)] for ids, full in zip(group, base_ids)) for n, group in ids_by_length.items()}
    cached = CachedTextEngine(loaded, encode_batch_size=batch_size)
    mixed = loaded.adapter.takes_position_ids
    for batch in batches_by_length([len(x) for x in base_ids], batch_size):
        chosen_ids = [base_ids[i] for i in batch]
        base_states = store.encode_batch(cached, chosen_ids) if store else cached.encode_batch(chosen_ids)
        groups: dict[object, list[int]] = {}  # prompts that run together on the batch's states
        rows = None
        for j, prompt in enumerate(prompts):
            n = prompt.shape[0]
            ids = ids_by_length[n]
            if mixed and prefix_ok[n]:
                groups.setdefault("mixed", []).append(j)
            elif all(len(ids[i]) == len(base_ids[i]) for i in batch):
                groups.setdefault(n, []).append(j)
            else:
                if prefix_ok[n]:  # rows truncated further: their states are prefixes of the longer text's
                    rows = rows or base_states.rows()
                    states = [s.prefix(len(ids[i])) for s, i in zip(rows, batch)]
                else:  # a tokenizer that adds a suffix token: truncation is not a prefix, encode again
                    states = cached.encode_batch([ids[i] for i in batch])
                out[j, batch] = cached.readout_hidden(states, prompt).float().cpu()
        per_pass = max(1, _ROWS_PER_PASS // len(batch))
        for key, group in groups.items():
            for start in range(0, len(group), per_pass):
                chosen = group[start : start + per_pass]
                if key == "mixed":
                    reads = torch.tensor([[len(ids_by_length[prompts[j].shape[0]][i]) for j in chosen] for i in batch])
                    hidden = torch.stack(cached.readout_hidden_mixed(base_states, [prompts[j] for j in chosen], reads))
                else:
                    hidden = cached.readout_hidden_many(base_states, torch.stack([prompts[j] for j in chosen]))
                for k, j in enumerate(chosen):
                    out[j, batch] = hidden[k].float().cpu()


@dataclass(frozen=True)
class Scorer:
    """Which prompts vote (an ensemble's members, or one prompt alone) and how their scores are calibrated."""

    members: tuple[int, ...]
    calibration: CalibrationConfig = CalibrationConfig()


class Calibrator:
    """Class log-probabilities of scorers, calibrated by their protocols (see :mod:`xlspt.calibration`).

    Content-free priors are computed once for all prompts, from content-free inputs only.
    ``reference``: the training language's read-out statistics per prompt, for ``standardize``.
    """

    def __init__(self, loaded: LoadedModel, verbalizer: Verbalizer, prompts: Sequence[torch.Tensor],
                 scorers: Sequence[Scorer], readout: ReadoutConfig = ReadoutConfig(), *,
                 reference: cal.StateStatistics | None = None, store: TextStateStore | None = None):
        self.loaded, self.verbalizer, self.scorers = loaded, verbalizer, list(scorers)
        self.reference = reference
        if reference is None and any(s.calibration.standardize for s in self.scorers):
            raise XlsptError("standardize needs the training language's read-out statistics: evaluate with the data "
                             "the prompt was trained on, or calibrate without standardize")
        self.prompts, self.readout, self.store = list(prompts), readout, store
        self._content_free: dict[str | None, torch.Tensor] = {}  # per script (None: any script)

    def content_free(self, calibration: CalibrationConfig, language: str | None) -> torch.Tensor:
        """``[P, M, C]`` log-probabilities of content-free inputs (in ``language``'s script where asked and known)."""
        script = cal.script_of(language) if calibration.by_script and language else None
        key = (script, calibration.content_free_texts)
        if key not in self._content_free:
            texts = content_free_texts(self.loaded.tokenizer, calibration.content_free_texts, script=script)
            self._content_free[key] = self.log_probs(readout_states(self.loaded, self.prompts, texts, self.readout, store=self.store))
        return self._content_free[key]

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """``[P, N, d]`` read-out states -> ``[P, N, C]`` class log-probabilities."""
        return cal.log_probs(self.verbalizer.class_logits(states_to_logits(self.loaded, self.verbalizer, states)))

    def scores(self, scorer: Scorer, scored: torch.Tensor, unlabeled: torch.Tensor | None = None,
               language: str | None = None) -> torch.Tensor:
        """``[N, C]`` ensemble log-probabilities of ``scorer`` from all prompts' ``[P, N, d]`` read-out states.

        ``unlabeled``: ``[P, M, d]`` states of unlabeled text of the same language (protocol ``unlabeled``).
        ``language``: the texts' language code, if known (its script serves ``content-free``).
        """
        members = list(scorer.members)
        calibration = scorer.calibration
        protocol = calibration.protocol
        scored = scored[members]
        if protocol is Protocol.UNLABELED:
            if unlabeled is None or unlabeled.shape[1] == 0:
                raise XlsptError("calibration 'unlabeled' needs unlabeled texts of the language: give some, or use 'batch'")
            unlabeled = unlabeled[members]
        elif protocol is Protocol.BATCH and scored.shape[1] < calibration.min_batch:
            raise XlsptError(
                f"calibration 'batch' estimates the label prior from the texts classified, and {scored.shape[1]} "
                f"are too few (at least {calibration.min_batch}): classify more texts at once or use content-free")
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
    scorer = Scorer(tuple(range(len(prompts))), calibration)
    calibrator = Calibrator(loaded, verbalizer, prompts, [scorer], readout, reference=reference)
    extra = list(unlabeled_texts) if calibration.protocol is Protocol.UNLABELED else []
    states = readout_states(loaded, list(prompts), [*texts, *extra], readout)
    return calibrator.scores(scorer, states[:, : len(texts)], states[:, len(texts) :], language)


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


ABSTAIN = "abstain"


def scored_predictions(
    texts: Sequence[str], scores: torch.Tensor, labels: Sequence[str], *, top_k: int | None = None,
    min_confidence: float | None = None,
) -> pd.DataFrame:
    """Each text's label with its probability over the label set, from ``[N, C]`` class scores.

    Columns ``text, label, probability`` and, with ``top_k``, ``top_k``: the ``k`` most probable
    labels as ``[{"label": ..., "probability": ...}, ...]``. Below ``min_confidence`` the label is
    ``"abstain"`` (the probability stays that of the most probable class).
    """
    if top_k is not None and top_k < 1:
        raise XlsptError(f"--top-k must be at least 1 (got {top_k})")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise XlsptError(f"--min-confidence must be a probability between 0 and 1 (got {min_confidence})")
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
) -> list[pd.DataFrame]:
    """The per-language loop of every evaluation: one results table per scorer, in the order given.

    Args:
        labels, protocols: each scorer's class order and the protocol its rows name.
        score_language: ``(language, its split's frame) -> [N, C]`` class scores of every scorer,
            from one read of the language's text.
        trained_labels: the classes the scorers were trained on; a gold label outside them is an
            error (``None``: not checked).
        headline: the scorers whose mean accuracy a language's log line shows. ``None``: no
            per-language report (neither the language on the bar nor a log line).
    """
    rows: list[list[dict]] = [[] for _ in protocols]
    per_class: list[list[dict]] = [[] for _ in protocols]
    confusions: list[dict] = [{} for _ in protocols]
    bar = progress_bar(languages, desc=desc, unit="lang", disable=not progress)
    for lang in bar:
        if headline is not None:
            bar.set_postfix(lang=lang)
        frame = data.split(lang, split)
        gold = frame["label"].tolist()
        stray = sorted(set(gold) - set(trained_labels)) if trained_labels is not None else []
        if stray:
            raise XlsptError(f"the {lang} {split} split has the label {stray[0]!r}, which the prompt was not trained on: "
                             f"its classes are {', '.join(trained_labels)}")
        scores = score_language(lang, frame)
        for j, (own, protocol) in enumerate(zip(labels, protocols)):
            predicted = [own[i] for i in scores[j].argmax(dim=1).tolist()]
            row, classes, matrix = language_result(lang, gold, predicted, own, protocol)
            rows[j].append(row)
            per_class[j] += classes
            confusions[j][lang] = matrix
        release_freed_memory()  # the read-out states, the largest thing freed, went with score_language's call
        if headline is not None and progress and not interactive() and len(languages) > 1:  # no bar in a log file
            shown = [rows[j] for j in headline]
            mean = sum(r[-1]["accuracy"] for r in shown) / len(shown)
            print(f"evaluated {lang} ({len(rows[0])}/{len(languages)}): accuracy {100 * mean:.1f}%"
                  f"{f' (mean of {len(shown)})' if len(shown) > 1 else ''}", file=sys.stderr, flush=True)
        checkpoint()
    return [results_table(loaded, own, r, c, m) for own, r, c, m in zip(labels, rows, per_class, confusions)]


def evaluate_prompts(
    loaded: LoadedModel,
    verbalizer: Verbalizer,
    prompts: Sequence[torch.Tensor],
    data: TaskData,
    languages: Sequence[str],
    readout: ReadoutConfig = ReadoutConfig(),
    *,
    scorers: Sequence[Scorer] | None = None,
    split: str = "test",
    store: TextStateStore | None = None,
    reference: cal.StateStatistics | None = None,
    headline: Sequence[int] | None = None,
    progress: bool = True,
) -> list[pd.DataFrame]:
    """Per-language results of several scorers (prompts alone or ensembles), reading each language's text once.

    Args:
        readout: how texts are read (:func:`readout_states`).
        scorers: which prompts vote together and how they are calibrated; default: each prompt
            alone, uncalibrated (the study's zero-shot protocol).
        store: text states kept on disk (:class:`~xlspt.engine.store.TextStateStore`).
        reference: for scorers that ``standardize``: the training language's statistics per prompt
            (:func:`reference_statistics`).
        headline: the scorers whose mean accuracy the per-language log line shows (default: all).

    Returns one table per scorer, in the order given, with columns ``language, accuracy,
    macro_f1, n, protocol``; its ``attrs`` hold the ``labels``, the ``per_class`` rows (precision,
    recall, F1 and support per language and class, as :func:`per_class_table` reads them) and each
    language's ``confusion`` counts ``[C, C]`` (gold rows, predicted columns; nested lists).
    """
    scorers = list(scorers) if scorers is not None else [Scorer((j,)) for j in range(len(prompts))]
    calibrator = Calibrator(loaded, verbalizer, prompts, scorers, readout, reference=reference, store=store)
    for s in scorers:
        if s.calibration.protocol is Protocol.UNLABELED and s.calibration.unlabeled_split == split:
            raise ConfigError("unlabeled_split", f"is the split being scored ({split}): use another split's texts, or batch")
    unlabeled_splits = sorted({s.calibration.unlabeled_split for s in scorers
                               if s.calibration.protocol is Protocol.UNLABELED})

    def score_language(lang: str, frame: pd.DataFrame) -> list[torch.Tensor]:
        # The unlabeled splits ride along after the scored texts, in the same read.
        extra = {name: data.split(lang, name)["text"].tolist() for name in unlabeled_splits}
        texts = frame["text"].tolist() + [t for name in unlabeled_splits for t in extra[name]]
        states = readout_states(loaded, list(prompts), texts, readout, store=store)
        unlabeled = _split_rows(states[:, len(frame) :], {name: len(part) for name, part in extra.items()})
        return [calibrator.scores(s, states[:, : len(frame)], unlabeled.get(s.calibration.unlabeled_split), lang)
                for s in scorers]

    return evaluate_each_language(
        loaded, data, languages, split, [verbalizer.labels] * len(scorers), [s.calibration.name for s in scorers],
        score_language, progress=progress, trained_labels=verbalizer.labels,
        headline=headline if headline is not None else range(len(scorers)),
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
