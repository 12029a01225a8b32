"""Running configured runs: one alone (``xlspt run``) or many that share work (``xlspt sweep``).

Runs that share a model are run by one worker, which loads the model once. The worker hands
each method's runs to its classifier (found through the registry,
:func:`~xlspt.classifiers.classifier_class`): ``fit_many`` fits them, sharing what it can (soft
prompts that share a training sample train together, packed into one pass over the cached
text at every step: :mod:`xlspt.classifiers.training` alone decides that), and
``evaluate_many`` scores the runs that read text alike in one pass over each language's text,
each run with its own prompts and calibration protocol. Runs that train the model too
(``freeze: false``) run one at a time, evaluated right after training, and the model's weights
are restored before the next run uses it.

Each run's files and record go to its own folder through :mod:`xlspt.study.outputs`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..classifiers import Classifier, FitRequest, Method, classifier_class
from ..data import DataConfig, TaskData, resolve_languages
from ..engine.options import ReadoutConfig
from ..errors import XlsptError
from ..files import write_json_atomic, write_with_atomic
from ..layout import MODEL_FILE, RECORD_FILE
from ..logs import muted
from ..models.loading import LoadedModel, load_model
from ..soft_prompt import SoftPrompt
from ..train import TrainingDiverged
from .config import RunConfig
from .outputs import write_run_results
from .records import RunRecord, RunStatus, device_info, library_versions

logger = logging.getLogger(__name__)


@dataclass
class PlannedRun:
    """A run with its id, its resolved languages and the folder its files go to."""

    config: RunConfig
    run_id: str
    languages: list[str]
    directory: Path
    initial: SoftPrompt | None = None  # a saved prompt to continue training from (`xlspt train --resume`)
    data_checksum: str = ""  # of the rows the run reads (its id names the data by it)


@dataclass
class Session:
    """What a worker keeps between runs: loaded data and models (one model at a time)."""

    device: str | None = None
    progress: bool = True
    strict: bool = False
    class_figures: bool = False  # a confusion-matrix PNG per language in the run folder (`xlspt run`; not in sweeps)
    predictions: bool = False  # predictions.jsonl, every scored text, in the run folder (`xlspt run`; not in sweeps)
    _data: dict = field(default_factory=dict)
    _checksums: dict = field(default_factory=dict)
    _model: tuple | None = None

    def data(self, config: RunConfig | DataConfig) -> TaskData:
        """The data a run reads (read once per session): ``config``'s data source and columns."""
        source = config.data_config() if isinstance(config, RunConfig) else config
        if source not in self._data:
            self._data[source] = TaskData.resolve(source)
        return self._data[source]

    def checksum(self, config: RunConfig, languages: Sequence[str]) -> str:
        """The checksum of what a run of ``config`` on ``languages`` reads: its training language's train and dev
        splits and each target's test split (computed once per session: a sweep's runs mostly read alike)."""
        parts = ((config.train_lang, "train"), (config.train_lang, "dev"), *((lang, "test") for lang in languages))
        key = (config.data_config(), parts)
        if key not in self._checksums:
            self._checksums[key] = self.data(config).checksum(parts)
        return self._checksums[key]

    def languages(self, config: RunConfig) -> list[str]:
        """The data's language codes, listed once (a Hub dataset asks the Hub)."""
        return self.data(config).languages()

    def model(self, config: RunConfig) -> LoadedModel:
        key = (config.model, config.resolved_dtype(self.device), self.device, config.trust_remote_code)
        if self._model is None or self._model[0] != key:
            self._model = None  # let the previous model go before the next one loads
            self._model = (key, load_model(config.model, dtype=key[1], device=self.device,
                                           trust_remote_code=config.trust_remote_code))
        return self._model[1]


def plan(config: RunConfig, session: Session, directory: Path | Callable[[str], Path],
         initial: SoftPrompt | None = None, *, targets: bool = True) -> PlannedRun:
    """Check the run's data cheaply (languages, splits) and give it its id and folder."""
    available = session.languages(config)
    resolve_languages([config.train_lang], available)
    languages = session.data(config).target_languages(config.langs) if targets else []
    checksum = session.checksum(config, languages)
    run_id = config.run_id(dtype=config.resolved_dtype(session.device), languages=languages, data_checksum=checksum)
    folder = directory(run_id) if callable(directory) else Path(directory)
    return PlannedRun(config, run_id, languages, folder, initial, checksum)


def fit_request(run: PlannedRun, labels: tuple[str, ...]) -> FitRequest:
    """What the run's classifier is fitted with, from its config (``labels``: the data's classes)."""
    c = run.config
    return FitRequest(
        train_language=c.train_lang, shots=c.shots, seed=c.seed,
        readout=ReadoutConfig(max_length=c.max_length, special_tokens=c.special_tokens), prompt=c.prompt_config(),
        training=c.train_config(), label_words=c.label_word_map(labels),
        allow_first_subtoken=c.allow_subword_labels, ensemble=c.ensemble, shared_sample=c.shared_sample,
        calibration=c.calibration_config(), initial=run.initial, lora=c.lora_config(), name=c.short_name(),
    )


def unit_key(run: PlannedRun) -> tuple:
    """Runs with equal keys are best run by one worker: frozen runs whose (first) prompts train together."""
    config = run.config
    if not config.freeze or not classifier_class(config.method).works_together:
        return (run.run_id,)
    return (config.model, config.dtype.value, config.data_config(), config.train_lang, config.shots, config.seed,
            config.train_config().steps_key(), config.label_words, config.allow_subword_labels, config.resolved_engine())


def _scoring_key(run: PlannedRun) -> tuple:
    c = run.config
    return (c.data_config(), c.label_words, c.allow_subword_labels, c.max_length, c.special_tokens, tuple(run.languages),
            c.limit)


def _work(runs: Sequence[PlannedRun]) -> list[tuple[type, list[PlannedRun]]]:
    """The runs by method and data: runs of one method on one data source that leave the model as it is
    together (methods in :class:`~xlspt.classifiers.Method` order), then each run that trains the model, or whose
    method shares nothing (:attr:`~xlspt.classifiers.Classifier.works_together`), alone."""
    together: dict[tuple, list[PlannedRun]] = {}
    alone: list[tuple[type, list[PlannedRun]]] = []
    for run in runs:
        if run.config.freeze and classifier_class(run.config.method).works_together:
            together.setdefault((list(Method).index(run.config.method), run.config.data_config()), []).append(run)
        else:
            alone.append((classifier_class(run.config.method), [run]))
    frozen = [(classifier_class(group[0].config.method), group) for _, group in sorted(together.items(), key=lambda kv: kv[0][0])]
    return frozen + alone


def run_group(
    runs: Sequence[PlannedRun], session: Session, on_record: Callable[[RunRecord], None],
) -> None:
    """Run ``runs`` (all on one model and dtype), calling ``on_record`` with each finished run's record.

    A run that fails is recorded as failed and the others go on, unless ``session.strict`` (one
    run from the command line), where its error propagates and nothing more is written.
    """
    if not runs:
        return
    loaded = session.model(runs[0].config)
    for method_class, group in _work(runs):
        if group[0].config.freeze:
            _fit_and_evaluate(method_class, group, loaded, session, on_record)
        else:
            with _weights_restored(loaded):
                _fit_and_evaluate(method_class, group, loaded, session, on_record)


def fit_runs(method_class: type, runs: Sequence[PlannedRun], loaded: LoadedModel, session: Session, *,
             desc: str | None = None) -> list:
    """Fit and save the classifiers of ``runs`` (one data source); each run gets its classifier or the error that
    stopped it (a run whose request cannot be built fails alone)."""
    outcomes: dict[int, object] = {}
    requests: dict[int, FitRequest] = {}
    for i, run in enumerate(runs):
        try:
            requests[i] = fit_request(run, session.data(run.config).labels(run.config.train_lang))
        except Exception as exc:
            if session.strict:
                raise
            outcomes[i] = exc
    if not runs[0].config.freeze:
        logger.info(f"training {runs[0].config.short_name()} with the model's weights too "
                    f"(model_lr {runs[0].config.train_config().model_lr:g})")
    if requests:
        try:
            fitted = method_class.fit_many(loaded, session.data(runs[0].config), list(requests.values()),
                                           progress=session.progress, raise_errors=session.strict, desc=desc)
        except TrainingDiverged as error:  # strict: one run, whose error is raised
            raise (_kept_before_divergence(error, runs[0].directory) if len(runs) == 1 else error) from None
        outcomes.update(zip(requests, fitted))
    for i, run in enumerate(runs):
        if isinstance(outcomes[i], TrainingDiverged):
            outcomes[i] = _kept_before_divergence(outcomes[i], run.directory)
        elif not isinstance(outcomes[i], BaseException):
            outcomes[i].save(run.directory)
    return [outcomes[i] for i in range(len(runs))]


def _kept_before_divergence(error: TrainingDiverged, directory: Path) -> TrainingDiverged:
    """Save the best prompt before a divergence (where the training kept one) in the run's folder; the error, its
    message naming where the prompt is kept."""
    if error.kept is None:
        return error
    error.kept.save(directory)
    return TrainingDiverged(f"{error}; the best prompt before that (epoch {error.best.best_epoch}, validation loss "
                            f"{error.best.best_val_loss:.3f}) is kept in {directory}", error.best)


def _fit_and_evaluate(method_class, runs, loaded, session, on_record) -> None:
    """Fit the runs' classifiers, then evaluate those that read text alike together, recording each run."""
    started = time.time()
    try:
        fitted = fit_runs(method_class, runs, loaded, session)
    except Exception as exc:
        if session.strict:
            raise
        fitted = [exc] * len(runs)
    done = []
    for run, outcome in zip(runs, fitted):
        if isinstance(outcome, BaseException):
            on_record(_failed(run, outcome, loaded, started))
        else:
            done.append((run, outcome, outcome.fit_seconds))
    try:
        model_file = _save_model(runs[0], loaded) if done and runs[0].config.save_model else None
    except Exception as exc:
        return _fail_all([run for run, _, _ in done], exc, loaded, session, on_record, started)
    by_scoring: dict[tuple, list] = {}
    for item in done:
        by_scoring.setdefault(_scoring_key(item[0]), []).append(item)
    for items in by_scoring.values():
        _evaluate_together(method_class, items, loaded, session, on_record, model_file)


def _fail_all(runs: Sequence[PlannedRun], exc: Exception, loaded, session: Session, on_record, started: float) -> None:
    """Record ``runs`` as failed by ``exc`` (a sweep goes on), or let it propagate (one run from the command line)."""
    if session.strict:
        raise exc
    for run in runs:
        on_record(_failed(run, exc, loaded, started))


def _save_model(run: PlannedRun, loaded: LoadedModel) -> str:
    """Keep the model weights a run trained (``save_model``) in its folder."""
    from safetensors.torch import save_model

    write_with_atomic(run.directory / MODEL_FILE, lambda tmp: save_model(loaded.model, str(tmp)))
    return MODEL_FILE


@contextlib.contextmanager
def _weights_restored(loaded: LoadedModel):
    """The model's original weights are put back after a run that trained them, whatever happened."""
    original = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    try:
        yield
    finally:
        loaded.model.load_state_dict(original)


def _evaluate_together(method_class, items, loaded, session, on_record, model_file) -> None:
    """Score the runs' classifiers in one text pass per language, then record each run."""
    run0 = items[0][0]
    started = time.time()
    try:
        evaluations = method_class.evaluate_many([clf for _, clf, _ in items], session.data(run0.config), run0.languages,
                                         progress=session.progress, limit=run0.config.limit)
    except Exception as exc:
        return _fail_all([run for run, _, _ in items], exc, loaded, session, on_record, started)
    seconds = (time.time() - started) / len(items)
    trainable_model = 0 if run0.config.freeze else sum(p.numel() for p in loaded.model.parameters())
    for (run, clf, train_seconds), evaluation in zip(items, evaluations):
        timings = {"train": round(train_seconds, 2), "evaluate": round(seconds, 2)}
        on_record(_finish(run, clf, evaluation, loaded, timings, trainable_model=trainable_model, model_file=model_file,
                          figures=session.class_figures, predictions=session.predictions))


def _finish(run: PlannedRun, clf: Classifier, evaluation, loaded, timings: dict, *, trainable_model: int,
            model_file: str | None = None, figures: bool = False, predictions: bool = False) -> RunRecord:
    results, member_results = evaluation.results, evaluation.member_results
    write_run_results(run.directory, clf, results, figures=figures, predictions=predictions)
    entries = clf.record_entries()
    weights = clf.metadata.weights_file
    stored_bytes = sum((run.directory / name).stat().st_size for name in clf.metadata.artifact_files()
                       if name != clf.metadata.sidecar_file)
    stored_params = clf.stored_parameters
    notes = list(entries["notes"])
    if not run.config.freeze:
        if model_file:
            stored_bytes += (run.directory / model_file).stat().st_size
            stored_params += trainable_model
        else:
            notes.append("the model's weights trained too and were not saved (save_model: false): "
                         "the record keeps the metrics and the prompt only")
    return RunRecord(
        run_id=run.run_id,
        status=RunStatus.DONE.value,
        config=_canonical(run, loaded),
        results=results.to_dict(orient="records"),
        best_epoch=entries["best_epoch"],
        best_val_loss=entries["best_val_loss"],
        history=entries["history"],
        trainable_parameters=int(clf.trainable_parameters + trainable_model),
        stored_parameters=int(stored_params),
        stored_bytes=int(stored_bytes),
        prompt_file=str(run.directory.name + "/" + weights),
        model_file=str(run.directory.name + "/" + model_file) if model_file else None,
        timings={**timings, "total": round(sum(timings.values()), 2)},
        versions=library_versions(),
        device=device_info(loaded.device, loaded.dtype),
        notes=notes,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        protocol=entries["protocol"],
        member_results=[m.to_dict(orient="records") for m in member_results] if member_results else None,
        data_checksum=run.data_checksum,
        evaluation_engine=evaluation.engine,
    )


def _failed(run: PlannedRun, exc: BaseException, loaded, started: float) -> RunRecord:
    message = str(exc) if isinstance(exc, XlsptError) else f"{exc.__class__.__name__}: {exc}"
    if not isinstance(exc, XlsptError):
        message += "\n" + "".join(traceback.format_exception(exc)).strip()
    return RunRecord(
        run_id=run.run_id, status=RunStatus.FAILED.value, config=_canonical(run, loaded), error=message,
        timings={"total": round(time.time() - started, 2)}, versions=library_versions(),
        device=device_info(loaded.device, loaded.dtype), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def _canonical(run: PlannedRun, loaded: LoadedModel) -> dict:
    return run.config.canonical(dtype=str(loaded.dtype).removeprefix("torch."), languages=run.languages,
                                data_checksum=run.data_checksum)


def run_one(config: RunConfig, directory: Path, session: Session | None = None) -> RunRecord:
    """Run one configuration into ``directory`` (``xlspt run``), through the same path as a sweep's runs.

    Errors propagate (nothing is recorded as failed); the folder gets the run files and ``record.json``.
    """

    session = session or Session(strict=True)
    planned = plan(config, session, directory)
    records: list[RunRecord] = []

    def keep(record: RunRecord) -> None:
        write_json_atomic(planned.directory / RECORD_FILE, record.to_dict())
        records.append(record)

    run_group([planned], session, keep)
    return records[0]


def train_one(config: RunConfig, directory: Path, session: Session | None = None,
              initial: SoftPrompt | None = None) -> Classifier:
    """Fit one configuration and save it into ``directory`` (``xlspt train``), through the same path as a run's
    fitting; nothing is evaluated. Errors propagate."""
    session = session or Session(strict=True)
    planned = plan(config, session, directory, initial, targets=False)
    with muted():  # the command says what it trains before and after; the fit itself is silent
        [classifier] = fit_runs(classifier_class(config.method), [planned], session.model(config), session,
                                desc="training")
    return classifier
