"""What ``xlspt evaluate`` and ``predict`` do: load saved classifiers (several vote together where they can), score
them through the one scoring path, return tables and predictions."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pandas as pd

from .. import layout
from ..calibration import CalibrationConfig, Protocol
from ..classifiers import (Method, PassOptions, PromptClassifier, ScoreRequest, classifier_class, load_classifier, saved_method)
from ..classifiers.scoring import calibration_of, check_answer_options, classify_requests, evaluate_requests
from ..data import DataConfig, TaskData
from ..data.languages import canonical_language
from ..errors import XlsptError
from ..hub import resolve_pretrained
from ..models.loading import LoadedModel, load_model
from ..results.summary import comparison, results_summary, write_comparison, write_results

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- evaluate and predict


def calibration_from(protocol: str | None, standardize: bool = False, unlabeled_split: str | None = None,
                     prior: bool = True, by_script: bool = True) -> CalibrationConfig | None:
    """The calibration asked for on the command line (``None``: each prompt's own)."""
    if (standardize or not prior) and not protocol:
        raise XlsptError(f"{'--standardize' if standardize else '--no-prior'} goes with --calibration unlabeled or batch: add one")
    if not by_script and protocol != Protocol.CONTENT_FREE.value:
        raise XlsptError("--no-content-free-script goes with --calibration content-free: add it")
    if not protocol:
        return None
    return CalibrationConfig(protocol, standardize=standardize, prior=prior, by_script=by_script,
                             **({"unlabeled_split": unlabeled_split} if unlabeled_split else {}))


@dataclass
class LoadOptions:
    """How saved classifiers are loaded: on which model, dtype and device (``None``: as they were trained)."""

    model: str | None = None
    dtype: str | None = None
    device: str | None = None
    trust_remote_code: bool = False

    def model_for(self, path: str) -> LoadedModel | str | None:
        """``model`` as a name, or, with ``trust_remote_code``, the model loaded here with its remote code allowed."""
        if not self.trust_remote_code:
            return self.model
        sidecar = classifier_class(saved_method(path)).load_sidecar(path)
        return load_model(self.model or sidecar.model, dtype=self.dtype or sidecar.dtype, device=self.device,
                          trust_remote_code=True)

    def load(self, path: str):
        """The classifier saved at ``path`` (a folder, a prompt file or a Hub id), on this model."""
        local = resolve_pretrained(path)
        return load_classifier(local, self.model_for(str(local)), dtype=self.dtype, device=self.device)


@dataclass
class EvaluateOptions:
    """What ``xlspt evaluate`` does besides scoring: vote, show members, calibrate, keep text states."""

    vote: bool = False
    members: bool = False
    calibration: CalibrationConfig | None = None
    engine: str = "auto"
    cache_states: bool = False
    progress: bool = True
    limit: int = 0


def evaluate(paths: Sequence[str], data: DataConfig, langs: str, out: str | Path | None = None, *,
             overwrite: bool = False, load: LoadOptions = LoadOptions(),
             options: EvaluateOptions = EvaluateOptions()) -> tuple[str, list[Path]]:
    """Evaluate saved prompts (several: from one pass over the text) on ``langs``; write ``out`` if given.
    Returns the printed text (one table, or a table per prompt and their comparison) and the main files written."""
    first_folder = prompt_folder(paths[0])
    first_sidecar = classifier_class(saved_method(first_folder)).load_sidecar(first_folder)
    trained_on = first_sidecar.data.train_language if first_sidecar.data else None
    # a source without languages of its own is in the prompt's training language
    task = TaskData.resolve(dataclasses.replace(data, language=trained_on) if trained_on else data)
    languages = task.target_languages(langs)
    for lang in languages:
        task.split(lang, "test")
    folder = layout.prepare_out_dir(out, "", overwrite, files=layout.RESULT_FILES) if out else None
    classifiers, names = _loaded_together(paths, load, options.vote)
    all_results, requests, labels = _score_together(classifiers, names, task, languages, options)
    if folder is not None and overwrite:
        layout.clear_files(folder, layout.RESULT_FILES)
    if len(all_results) == 1:
        table, text, summary = results_summary(classifiers[0].metadata.summary_header(), all_results[0])
        if folder is not None:
            write_results(folder, all_results[0], text, summary, figures=True, predictions=True)
    else:
        headers = [s.classifier.metadata.summary_header() for s in requests]
        table, combined, summary = comparison(labels, headers, all_results)
        if folder is not None:
            write_comparison(folder, table, combined, summary)
    return table, [folder / layout.RESULTS_FILE, folder / layout.SUMMARY_FILE] if folder is not None else []


def prompt_folder(path: str, methods: tuple[Method, ...] = (Method.PROMPT, Method.LORA)) -> Path:
    """The local folder of the prompts ``path`` names (with adapters too, unless ``methods`` leaves them out);
    another kind of artifact is refused (it has no requests)."""
    local = resolve_pretrained(path)
    method = saved_method(local)
    if method not in methods and Method.LORA not in methods:
        raise XlsptError(f"{path} holds a {method.value}: self-training continues the training of a soft prompt "
                         f"(method prompt); train a {method.value} afresh with `xlspt run --method {method.value}`")
    if method not in methods:  # what the command reads: a prompt's sidecar makes the summary's header
        raise XlsptError(f"{path} holds a {method.value}, not a soft prompt: `xlspt evaluate` scores prompts; the "
                         f"{method.value}'s results come with `xlspt run --method {method.value}`, and `xlspt predict` classifies with it")
    return local


def _loaded_together(paths: Sequence[str], load: LoadOptions, vote: bool) -> tuple[list[PromptClassifier], list[str]]:
    """The prompts of ``paths`` on one model (as one ensemble with ``vote``), refused if they read text differently."""
    first = load.load(paths[0])
    classifiers = [first] + [load_classifier(prompt_folder(p), first.model) for p in paths[1:]]
    if any(c.verbalizer != first.verbalizer or c.readout != first.readout for c in classifiers):
        raise XlsptError("these prompts use different label words, maximum lengths or tokenization: evaluate them one at a time")
    names = list(paths)
    if vote and len(classifiers) > 1:
        if len({type(c) for c in classifiers}) > 1:
            raise XlsptError("--vote joins prompts of one method: prompts with adapters (method lora) vote with "
                             "prompts with adapters only; evaluate the others beside them without --vote")
        return [type(first).ensemble_of(classifiers)], [f"vote of {len(paths)} prompts"]
    return classifiers, names


def _score_together(classifiers, names, data: TaskData, languages, options: EvaluateOptions):
    """One pass over each language's text for every prompt; a scorer per prompt (and per member with ``members``)."""
    requests, labels = [], []
    for name, clf in zip(names, classifiers):
        requests.append(ScoreRequest(clf, (), None, options.calibration))
        clf.prepare_evaluation(data, languages, calibration_of(requests[-1]))
        labels.append(name)
        if options.members and clf.size > 1:
            requests += [ScoreRequest(clf, (), (j,), options.calibration) for j in range(clf.size)]
            labels += [f"{name} member {i}" for i in range(clf.size)]
    store = None
    first = classifiers[0]
    if options.cache_states:
        from ..engine.store import TextStateStore

        store = TextStateStore(first.model)
    results = evaluate_requests(requests, data, languages, options=PassOptions(engine=options.engine, store=store),
                               progress=options.progress, limit=options.limit)
    if store is not None:
        logger.info(f"text states: {store.hits} batches read from {store.root}, {store.misses} computed and stored")
    return [s.classifier.marked_table(table) for s, table in zip(requests, results)], requests, labels


#: Texts scored per step when predictions stream (a batch-calibrated run reads all first).
PREDICT_CHUNK = 64


@dataclass
class PredictOptions:
    """How ``xlspt predict`` scores: calibration, unlabeled texts, language, top-k, abstention, engine."""

    calibration: CalibrationConfig | None = None
    unlabeled: list[str] = field(default_factory=list)
    language: str | None = None
    top_k: int | None = None
    min_confidence: float | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.language:  # `fr` or `fra` is fra_Latn: the script content-free calibration reads must not be lost
            self.language = canonical_language(self.language)
            if re.fullmatch(r"[A-Za-z]{2,3}", self.language):
                raise XlsptError(f"--lang {self.language}: no SIB-200 language has that code; give a code with its "
                                 "script, such as fra_Latn (`xlspt languages --data DIR` lists a data's languages)")
        check_answer_options(self.top_k, self.min_confidence)


def predict(path: str, texts: Iterable[str], *, load: LoadOptions = LoadOptions(),
            options: PredictOptions = PredictOptions()) -> tuple[Iterator[pd.DataFrame], str, tuple[str, ...]]:
    """Scored predictions of ``texts`` (non-empty lines) by the classifier saved at ``path``, a frame per chunk;
    what produced them (the protocol, or the probe baseline) and the labels. Answers stream, unless the
    calibration needs every text first."""
    classifier = load.load(path)
    whole = _needs_every_text(classifier, options)

    def answer(chunk: list[str]) -> pd.DataFrame:
        [frame] = classify_requests([ScoreRequest(classifier, chunk, None, options.calibration, options.unlabeled,
                                                  options.language, options.top_k, options.min_confidence)],
                                    PassOptions(batch_size=32, engine=options.engine))
        return frame

    frames = (answer(chunk) for chunk in _chunks((t for t in texts if t.strip()), None if whole else PREDICT_CHUNK))
    label = classifier.protocol_label(options.calibration)
    return frames, f"protocol: {label}" if classifier.takes_calibration else label, tuple(classifier.labels)


def _needs_every_text(classifier, options: PredictOptions) -> bool:
    """Whether the calibration needs every text before the first answer; refuses what the classifier's calibration
    cannot use or lacks (:meth:`~xlspt.calibration.CalibrationConfig.check_inputs`), before any text is read."""
    if not classifier.takes_calibration:
        if options.calibration is not None or options.unlabeled:
            raise XlsptError(f"the {classifier.protocol_label()} takes no calibration: drop --calibration and --unlabeled")
        return False
    protocol = options.calibration or classifier.calibration
    if options.unlabeled and protocol.protocol is not Protocol.UNLABELED:
        raise XlsptError(f"--unlabeled FILE is read for --calibration unlabeled only (this run uses {protocol.name}): "
                         "add it, or drop --unlabeled")
    protocol.check_inputs(None, len(options.unlabeled), getattr(classifier, "reference", None) is not None)
    return protocol.protocol in (Protocol.BATCH, Protocol.UNLABELED)


def _chunks(texts: Iterable[str], size: int | None) -> Iterator[list[str]]:
    """``texts`` ``size`` at a time (all at once for ``None``); refuses no text at all."""
    chunk: list[str] = []
    count = 0
    for text in texts:
        chunk.append(text)
        if size is not None and len(chunk) >= size:
            count += len(chunk)
            yield chunk
            chunk = []
    if chunk:
        count += len(chunk)
        yield chunk
    if not count:
        raise XlsptError("no text to classify: pass texts as arguments, --file FILE, or lines on standard input")


def prediction_records(table: pd.DataFrame) -> list[dict]:
    """Scored predictions as JSON objects (``text, label, probability[, top_k]``), probabilities to 6 decimals:
    what ``xlspt predict --format json`` prints and ``xlspt serve`` answers."""
    rows = table.to_dict(orient="records")
    for row in rows:
        row["probability"] = round(row["probability"], 6)
        for item in row.get("top_k") or []:
            item["probability"] = round(item["probability"], 6)
    return rows


