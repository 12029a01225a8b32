"""What ``xlspt run``, ``train``, ``label-words`` and ``self-train`` do: check the input before minutes of model
loading, train through the study runner (the one path that writes run folders), return what the command prints."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from .. import layout
from ..classifiers import (Method, SelfTrainingConfig, SelfTrainingScope,
                          classifier_class, self_train as train_further)
from ..data import DataConfig, TaskData, resolve_languages
from ..errors import XlsptError
from ..train import TrainingDiverged
from ..models.devices import resolve_device
from ..models.loading import LoadedModel, load_model
from ..results.summary import results_summary
from ..study.config import RunConfig
from ..study.records import RunRecord
from ..study.runner import Session, run_one, train_one
from .scoring import LoadOptions, prompt_folder

logger = logging.getLogger(__name__)


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
    logger.info(f"model {model.name} ({model.model_type}, hidden size {model.hidden_size}, {str(model.dtype)[6:]} "
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
            logger.info(announce)
        return
    from ..classifiers import build_verbalizer
    from ..data.sib200 import CATEGORIES

    labels = data.labels(config.train_lang)
    given = config.label_word_map(labels) or {}
    verbalizer = build_verbalizer(model, given, config.allow_subword_labels, labels)
    if announce:
        logger.info(announce)
    proposed = [label for label in labels if label not in given]
    if tuple(labels) != CATEGORIES and proposed:
        words = verbalizer.as_dict()
        logger.info("label words proposed from the label names: " + ", ".join(f"{label}={words[label]!r}" for label in proposed)
                    + " (--label-words to choose others; `xlspt label-words` scores candidates on the dev split)")


def _resumable(path: str):
    from ..artifact import PromptArtifact

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
    from ..classifiers import build_verbalizer, choose_label_words
    from ..verbalizer import parse_label_words, proposed_candidates

    data = TaskData.resolve(config.data_config())
    check_data(config, data, targets=False)
    labels = data.labels(config.train_lang)
    parsed = [None if c == "default" else parse_label_words(c, labels) for c in candidates]
    model = load_model(config.model, dtype=config.dtype.value, trust_remote_code=config.trust_remote_code)
    default = build_verbalizer(model, labels=labels).as_dict()
    if not parsed:
        parsed = proposed_candidates(model.tokenizer, model.model.get_input_embeddings().weight.detach(), default)
        logger.info(f"{len(parsed)} candidates proposed from {'the label names' if default != model.adapter.label_words else 'the default words'}"
                    " and their nearest tokens in the model's embedding table")
    parsed = [c or default for c in parsed]
    return choose_label_words(model, data, parsed, train_language=config.train_lang, shots=config.shots,
                              prompt=config.prompt_config(), training=config.train_config(),
                              allow_first_subtoken=config.allow_subword_labels, progress=progress)


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
    folder = prompt_folder(path, (Method.PROMPT,))
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
        written.append((targets[lang], clf.metadata.self_training.languages))
    return written


