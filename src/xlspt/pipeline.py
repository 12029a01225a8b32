"""One library function per command: what ``xlspt run``, ``train``, ``evaluate``, ``predict``, ``self-train``,
``push`` and ``label-words`` do, for the command line and for Python alike.

Each function checks what it can before minutes of model loading, writes files only through the
library's rules (:mod:`xlspt.layout`, :mod:`xlspt.results.summary`, the classifiers' ``save``)
and returns what the command prints; the command line only parses, calls and prints.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import pandas as pd

from . import layout
from .calibration import CalibrationConfig, Protocol
from .classifiers import (Method, PassOptions, PromptClassifier, ScoreRequest, SelfTrainingConfig, SelfTrainingScope,
                          classifier_class, load_classifier, saved_method, self_train as train_further)
from .classifiers.scoring import calibration_of, check_answer_options, classify_requests, evaluate_scorers
from .data import DataConfig, TaskData, resolve_languages
from .data.languages import canonical_language
from .errors import XlsptError
from .train import TrainingDiverged
from .hub import resolve_pretrained
from .models.devices import resolve_device
from .models.loading import LoadedModel, load_model
from .results.summary import comparison, results_summary, write_comparison, write_results
from .study.config import RunConfig
from .study.records import RunRecord
from .study.runner import Session, run_one, train_one


def say(message: str) -> None:
    """A line of progress or outcome on stderr (standard output keeps what a pipe reads)."""
    print(message, file=sys.stderr, flush=True)


def check_data(config: RunConfig, data: TaskData, *, targets: bool = True) -> None:
    """Read and check the training language's splits, the label words and every target's test split now,
    before minutes of model loading: a broken file fails here, not after training."""
    for split in ("train", "dev"):
        data.split(config.train_lang, split)
    config.label_word_map(data.labels(config.train_lang))
    if targets:
        for lang in data.target_languages(config.langs):
            data.split(lang, "test")


# ---------------------------------------------------------------- run and train


@dataclass
class RunOutcome:
    """What ``xlspt run`` made: the run's record, the printed results table and a line about the fit."""

    record: RunRecord
    table: str
    fit: str


def run(config: RunConfig, out: str | Path | None, *, overwrite: bool = False, device: str | None = None,
        progress: bool = True, announce: str | None = None) -> tuple[Path, RunOutcome]:
    """Train ``config`` on its training language and evaluate it on its targets into the folder ``out``.
    ``announce``: a line said once the data and the model are known good (the recipe the run follows)."""
    folder = layout.prepare_out_dir(out, config.model, overwrite)
    session = Session(device=resolve_device(device), progress=progress, strict=True, class_figures=True, predictions=True)
    check_data(config, session.data(config))
    model = session.model(config)
    _input_checked(config, session.data(config), model, announce)
    if overwrite:
        layout.clear_files(folder)
    record = run_one(config, folder, session)
    fit = (f"best epoch {record.best_epoch} (validation loss {record.best_val_loss:.3f})"
           if record.best_val_loss is not None else "the probe baseline")
    line = (f"model {model.name} ({model.model_type}, {str(model.dtype)[6:]} on {model.device}); "
            f"trained in {record.timings.get('train', 0):.0f} s, {fit}; evaluated in {record.timings.get('evaluate', 0):.0f} s")
    sidecar = classifier_class(config.method).load_sidecar(folder)
    table, _, _ = results_summary(sidecar.summary_header(), pd.DataFrame(record.results))
    return folder, RunOutcome(record, table, line)


def train(config: RunConfig, out: str | Path | None, *, overwrite: bool = False, resume: str | None = None,
          device: str | None = None, progress: bool = True, announce: str | None = None) -> tuple[Path, str]:
    """Fit ``config`` and save it into ``out`` (nothing evaluated); returns the weights file and a line about the fit.
    ``announce``: as :func:`run`'s."""
    if not config.freeze:
        raise XlsptError("`xlspt train --no-freeze` would save a prompt without the model weights it needs: use `xlspt run --no-freeze`")
    session = Session(device=device, progress=progress, strict=True)
    data = session.data(config)
    resolve_languages([config.train_lang], data.languages())
    check_data(config, data, targets=False)
    folder = layout.prepare_out_dir(out, config.model, overwrite, files=layout.ARTIFACT_FILES)
    artifact = _resumable(resume) if resume else None  # a bad path fails now, not after the model loads
    model = session.model(config)
    initial = _resumed(artifact, resume, model) if artifact else None
    _input_checked(config, data, model, announce)
    say(f"model {model.name} ({model.model_type}, hidden size {model.hidden_size}, {str(model.dtype)[6:]} "
        f"on {model.device}); data {data.description}")
    try:
        classifier = train_one(config, folder, session, initial)
    except TrainingDiverged:  # the best prompt before it was kept in the folder: what was there besides goes
        if overwrite:
            layout.clear_files(folder, [f for f in layout.RUN_FILES if f not in layout.PROMPT_FILES])
        raise
    if overwrite:  # only now: a training that fails leaves the earlier files as they were
        kept = classifier.metadata.artifact_files()
        layout.clear_files(folder, [f for f in layout.RUN_FILES if f not in kept])
    return folder / classifier.metadata.weights_file, classifier.fit_summary()


def _input_checked(config: RunConfig, data: TaskData, model: LoadedModel, announce: str | None) -> None:
    """Check what only the model can check (a prompt's label words need its tokenizer), then say ``announce`` (the
    recipe) and, where words were proposed from the label names, which word each label got: bad input gets its
    error alone."""
    if config.method not in (Method.PROMPT, Method.LORA):
        if announce:
            say(announce)
        return
    from .classifiers import build_verbalizer
    from .data.sib200 import CATEGORIES

    labels = data.labels(config.train_lang)
    given = config.label_word_map(labels) or {}
    verbalizer = build_verbalizer(model, given, config.allow_subword_labels, labels)
    if announce:
        say(announce)
    proposed = [label for label in labels if label not in given]
    if tuple(labels) != CATEGORIES and proposed:
        words = verbalizer.as_dict()
        say("label words proposed from the label names: " + ", ".join(f"{label}={words[label]!r}" for label in proposed)
            + " (--label-words to choose others; `xlspt label-words` scores candidates on the dev split)")


def _resumable(path: str):
    from .artifact import PromptArtifact

    return PromptArtifact.load(path)


def _resumed(artifact, path: str, model: LoadedModel):
    """The trainable prompt of ``artifact`` (``--resume path``), checked against ``model``."""
    artifact.check_model(model.signature(), model.name)
    if artifact.is_ensemble:
        raise XlsptError(f"--resume {path} is an ensemble of {len(artifact.prompts)} prompts: resume a single prompt")
    return artifact.soft_prompt()


def label_words(config: RunConfig, candidates: Sequence[str] = (), *, progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """The label-word candidate (a ``--label-words`` text, or ``default``) whose prompt does best on the training
    language's dev split, and the table of all candidates. With no candidates, xlspt proposes them: the default
    words (the model family's for SIB-200, else made from the label names), each with its two nearest whole-word
    tokens in the model's embedding table as several words per class, and each class's nearest token alone
    (:func:`~xlspt.verbalizer.proposed_candidates`)."""
    from .classifiers import build_verbalizer, choose_label_words
    from .verbalizer import parse_label_words, proposed_candidates

    data = TaskData.resolve(config.data_config())
    check_data(config, data, targets=False)
    labels = data.labels(config.train_lang)
    parsed = [None if c == "default" else parse_label_words(c, labels) for c in candidates]
    model = load_model(config.model, dtype=config.dtype.value, trust_remote_code=config.trust_remote_code)
    default = build_verbalizer(model, labels=labels).as_dict()
    if not parsed:
        parsed = proposed_candidates(model.tokenizer, model.model.get_input_embeddings().weight.detach(), default)
        say(f"{len(parsed)} candidates proposed from {'the label names' if default != model.adapter.label_words else 'the default words'}"
            " and their nearest tokens in the model's embedding table")
    parsed = [c or default for c in parsed]
    return choose_label_words(model, data, parsed, train_language=config.train_lang, shots=config.shots,
                              prompt=config.prompt_config(), training=config.train_config(),
                              allow_first_subtoken=config.allow_subword_labels, progress=progress)


# ---------------------------------------------------------------- evaluate and predict


def calibration_from(protocol: str | None, standardize: bool = False, unlabeled_split: str | None = None,
                     prior: bool = True) -> CalibrationConfig | None:
    """The calibration asked for on the command line (``None``: each prompt's own)."""
    if (standardize or not prior) and not protocol:
        raise XlsptError(f"{'--standardize' if standardize else '--no-prior'} goes with --calibration unlabeled or batch: add one")
    if not protocol:
        return None
    return CalibrationConfig(protocol, standardize=standardize, prior=prior,
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
    first_folder = _prompt_folder(paths[0])
    first_sidecar = classifier_class(saved_method(first_folder)).load_sidecar(first_folder)
    trained_on = first_sidecar.data.train_language if first_sidecar.data else None
    # a source without languages of its own is in the prompt's training language
    task = TaskData.resolve(dataclasses.replace(data, language=trained_on) if trained_on else data)
    languages = task.target_languages(langs)
    for lang in languages:
        task.split(lang, "test")
    folder = layout.prepare_out_dir(out, "", overwrite, files=layout.RESULT_FILES) if out else None
    classifiers, names = _loaded_together(paths, load, options.vote)
    all_results, scorers, labels = _score_together(classifiers, names, task, languages, options)
    if folder is not None and overwrite:
        layout.clear_files(folder, layout.RESULT_FILES)
    if len(all_results) == 1:
        table, text, summary = results_summary(classifiers[0].metadata.summary_header(), all_results[0])
        if folder is not None:
            write_results(folder, all_results[0], text, summary, figures=True, predictions=True)
    else:
        headers = [s.classifier.metadata.summary_header() for s in scorers]
        table, combined, summary = comparison(labels, headers, all_results)
        if folder is not None:
            write_comparison(folder, table, combined, summary)
    return table, [folder / layout.RESULTS_FILE, folder / layout.SUMMARY_FILE] if folder is not None else []


def _prompt_folder(path: str, methods: tuple[Method, ...] = (Method.PROMPT, Method.LORA)) -> Path:
    """The local folder of the prompts ``path`` names (with adapters too, unless ``methods`` leaves them out);
    another kind of artifact is refused (it has no scorers)."""
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
    classifiers = [first] + [load_classifier(_prompt_folder(p), first.model) for p in paths[1:]]
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
    scorers, labels = [], []
    for name, clf in zip(names, classifiers):
        scorers.append(ScoreRequest(clf, (), None, options.calibration))
        clf.prepare_evaluation(data, languages, calibration_of(scorers[-1]))
        labels.append(name)
        if options.members and clf.size > 1:
            scorers += [ScoreRequest(clf, (), (j,), options.calibration) for j in range(clf.size)]
            labels += [f"{name} member {i}" for i in range(clf.size)]
    store = None
    first = classifiers[0]
    if options.cache_states:
        from .engine.store import TextStateStore

        store = TextStateStore(first.model)
    results = evaluate_scorers(scorers, data, languages, options=PassOptions(engine=options.engine, store=store),
                               progress=options.progress, limit=options.limit)
    if store is not None:
        say(f"text states: {store.hits} batches read from {store.root}, {store.misses} computed and stored")
    return [s.classifier.marked_table(table) for s, table in zip(scorers, results)], scorers, labels


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


class PredictionWriter:
    """Writes scored predictions to ``stream`` as a table (label, probability, text), JSON Lines or CSV,
    flushing each chunk."""

    def __init__(self, fmt: str, top_k: bool, stream=None) -> None:
        import csv

        self.fmt, self.top_k, self.stream = fmt, top_k, stream or sys.stdout
        self.csv = csv.writer(self.stream, lineterminator="\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["text", "label", "probability", *(["top_k"] if top_k else [])])

    def write(self, table: pd.DataFrame) -> int:
        for row in prediction_records(table) if self.fmt == "json" else table.to_dict(orient="records"):
            print(self._line(row), file=self.stream) if self.csv is None else self._csv_row(row)
        self.stream.flush()
        return len(table)

    def _line(self, row: dict) -> str:
        import json

        if self.fmt == "json":
            return json.dumps(row, ensure_ascii=False)
        top = ["  ".join(f"{t['label']}:{t['probability']:.3f}" for t in row["top_k"])] if self.top_k else []
        return "\t".join([row["label"], f"{row['probability']:.3f}", *top, row["text"]])

    def _csv_row(self, row: dict) -> None:
        import json

        top = [json.dumps([[t["label"], round(t["probability"], 6)] for t in row["top_k"]], ensure_ascii=False)] if self.top_k else []
        self.csv.writerow([row["text"], row["label"], f"{row['probability']:.6f}", *top])


# ---------------------------------------------------------------- sharing


def push(folder: str | Path, repo: str, *, hub: str | None = None, token: str | None = None,
         private: bool = False, dry_run: bool = False) -> str:
    """Share a saved prompt folder as ``repo`` with its model card (its results too, when the folder has them),
    with no local path in any file uploaded (:func:`~xlspt.hub.stage_shareable`); returns where it went.

    ``dry_run``: upload nothing; return what would be uploaded, where: each file with its size, and the
    model card's metadata.
    """
    import tempfile

    from .card import front_matter
    from .hub import push_folder, shared_kind, stage_shareable

    folder = Path(folder)
    kind = shared_kind(folder) if folder.is_dir() else None
    if kind is None or not (folder / layout.PROMPT_FILE).is_file():
        raise XlsptError(f"--prompt {folder} is not a saved prompt folder (no {layout.PROMPT_FILE} and "
                         f"{layout.PROMPT_SIDECAR}): pass the --out folder of `xlspt run` or `xlspt train`")
    # refuses a damaged or foreign folder before anything is staged
    loaded = classifier_class(kind.method).load_sidecar(folder)
    loaded.check_weights(folder)
    with tempfile.TemporaryDirectory(prefix="xlspt-push-") as staging:
        files = stage_shareable(folder, staging, repo_id=repo)
        where = push_folder(staging, repo, hub=hub, token=token, private=private, dry_run=dry_run)
        if not dry_run:
            return where
        width = max(len(p.name) for p in files)
        card = front_matter((Path(staging) / layout.CARD_FILE).read_text(encoding="utf-8"))
        return "\n".join([f"would upload {len(files)} files to {where}:",
                          *(f"  {p.name:<{width}}  {p.stat().st_size:>9,} bytes" for p in files),
                          "model card metadata:", *(f"  {line}" for line in card.splitlines())])


def unlabeled_texts(data: DataConfig, langs: str, split: str = "dev") -> dict[str, list[str]]:
    """Each of ``langs``' texts of ``split`` (labels unread), for self-training; the test split is refused."""
    if split == "test":
        raise XlsptError("--unlabeled-split test: the test split is what evaluate scores, and a prompt self-trained on "
                         "it would be scored on texts it read; use dev (the default) or another split")
    task = TaskData.resolve(data)
    return {lang: task.split(lang, split)["text"].tolist() for lang in task.target_languages(langs)}


def self_train(path: str, out: str | Path, unlabeled: dict[str, list[str]], config: SelfTrainingConfig, *,
               data: DataConfig | None = None, overwrite: bool = False, load: LoadOptions = LoadOptions(),
               progress: bool = True) -> list[tuple[Path, dict[str, int]]]:
    """Self-train the prompt saved at ``path`` on ``unlabeled`` (language -> texts) and save the result in ``out``
    (per language: ``out/<language>``). Returns, per classifier written, its folder and the pseudo-labelled
    texts it trained on per language."""
    folder = _prompt_folder(path, (Method.PROMPT,))
    per_language = config.scope is SelfTrainingScope.PER_LANGUAGE
    targets = {lang: Path(out) / lang for lang in unlabeled} if per_language else {None: Path(out)}
    for target in targets.values():
        layout.prepare_out_dir(target, "", overwrite, files=layout.RUN_FILES)
    classifier = load.load(str(folder))
    task = TaskData.resolve(data) if data is not None and data.source is not None else None
    tuned = train_further(classifier, unlabeled, config, data=task, progress=progress)
    written = []
    for lang, clf in (tuned.items() if per_language else [(None, tuned)]):
        if overwrite:
            layout.clear_files(targets[lang], layout.RUN_FILES)
        clf.save(targets[lang])
        written.append((targets[lang], clf.metadata.self_training["languages"]))
    return written


def read_lines(path: str, option: str, stdin: Callable[[], str] = lambda: sys.stdin.read()) -> list[str]:
    """The lines of the UTF-8 text file ``path`` (``-``: standard input), or one line naming ``option``."""
    if path == "-":
        return stdin().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise XlsptError(f"cannot read {option} {path}: {exc.__class__.__name__}: pass a UTF-8 text file") from None


# ---------------------------------------------------------------- listings


def languages_table(data: DataConfig | None = None) -> tuple[str, str]:
    """The languages of ``data`` (``None``: the study's 52) with names and pretraining shares, and a closing line."""
    from .data.languages import STUDY_SET, language_info, language_sets

    sets = language_sets()
    member = {code: name for name, codes in sets.items() for code in codes}
    task = TaskData.resolve(data) if data is not None else None
    codes = list(sets[STUDY_SET]) if task is None else task.languages()
    lines = [f"{'code':<10} {'name':<22} {'set':>8} {'XGLM %':>7} {'BLOOM %':>7}"]
    for code in codes:
        info = language_info(code)
        xglm = f"{100 * info.xglm_share:.2f}" if info.xglm_share is not None else "-"
        bloom = f"{100 * info.bloom_share:.2f}" if info.bloom_share is not None else "-"
        lines.append(f"{code:<10} {(info.name or '')[:22]:<22} {member.get(code, ''):>8} {xglm:>7} {bloom:>7}")
    where = f" in {task.description}" if task is not None else ""
    return "\n".join(lines), (f"{len(codes)} languages{where}; 'set' names the --langs set a language is in: 52 (the "
                               "study's, target languages), dev (for choosing settings on their dev splits), held-out "
                               "(never chosen on); shares are of pretraining data")


def models_table() -> str:
    """The embedded model, the study's models and the supported architectures with their default label words."""
    import json

    from .models import ADAPTERS, EMBEDDED_DEFAULT, EMBEDDED_MODELS, STUDY_MODELS

    lines = ["Embedded (no download):"]
    lines += [f"  {name:<24} {text}{'  [default]' if name == EMBEDDED_DEFAULT else ''}" for name, text in EMBEDDED_MODELS.items()]
    lines.append("The study's models (Hugging Face Hub):")
    lines += [f"  {name:<24} {text}" for name, text in STUDY_MODELS.items()]
    lines.append("Any causal LM of these architectures (Hub id, local directory or .gguf file), with default label words:")
    for adapter in ADAPTERS:
        words = ", ".join(json.dumps(w) for w in adapter.label_words.values())
        lines.append(f"  {adapter.family:<8} model_type {', '.join(adapter.model_types):<18} {words}")
    return "\n".join(lines)
