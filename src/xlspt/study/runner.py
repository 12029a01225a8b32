"""Running configured runs: one alone (``xlspt run``) or many that share work (``xlspt sweep``).

Runs that share a model are run by one worker, which loads the model once. Within it, frozen
runs that share a training sample (same language, shots, seed, batches, epochs) train
together, their prompts packed into one pass over the cached text at every step
(:func:`~xlspt.train.train_prompts`); an ensemble run's members join those groups one by one
(member ``i`` trains with seed ``seed + i``). Then every finished prompt with the same label
words and languages is scored together, one pass over each language's text for all of them,
each run reading its own prompts with its own calibration protocol. Runs with
the model trained too (``freeze: false``) run one at a time, evaluated right after training,
and the model's weights are restored before the next run uses it.

Each run's files and record go to its own folder through :mod:`xlspt.study.outputs`.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from ..artifact import PROMPT_FILE
from ..classifier import PromptClassifier, build_verbalizer, stacked_reference
from ..data import DataConfig, TaskData, resolve_languages, sample_few_shot
from ..errors import XlsptError
from ..evaluate import Scorer, evaluate_prompts
from ..models.loading import LoadedModel, load_model
from ..train import TrainingDiverged, train_prompts
from .config import Method, RunConfig
from .outputs import MODEL_FILE, write_run_results
from .records import RunRecord, RunStatus, device_info, library_versions


@dataclass
class PlannedRun:
    """A run with its id, its resolved languages and the folder its files go to."""

    config: RunConfig
    run_id: str
    languages: list[str]
    directory: Path


@dataclass
class Session:
    """What a worker keeps between runs: loaded data and models (one model at a time)."""

    device: str | None = None
    progress: bool = True
    strict: bool = False
    class_figures: bool = False  # a confusion-matrix PNG per language in the run folder (`xlspt run`; not in sweeps)
    _data: dict = field(default_factory=dict)
    _model: tuple | None = None

    def data(self, config: RunConfig | DataConfig) -> TaskData:
        """The data a run reads (read once per session): ``config``'s data source and columns."""
        source = config.data_config() if isinstance(config, RunConfig) else config
        if source not in self._data:
            self._data[source] = TaskData.resolve(source)
        return self._data[source]

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


def plan(config: RunConfig, session: Session, directory: Path | Callable[[str], Path]) -> PlannedRun:
    """Check the run's data cheaply (languages, splits) and give it its id and folder."""
    available = session.languages(config)
    resolve_languages([config.train_lang], available)
    languages = session.data(config).target_languages(config.langs)
    run_id = config.run_id(dtype=config.resolved_dtype(session.device), languages=languages)
    folder = directory(run_id) if callable(directory) else Path(directory)
    return PlannedRun(config, run_id, languages, folder)


@dataclass
class _Member:
    """One prompt to train: a run's only prompt, or member ``index`` of its ensemble."""

    run: PlannedRun
    index: int
    seed: int
    sample_seed: int


def _members(run: PlannedRun) -> list[_Member]:
    config = run.config
    return [_Member(run, i, seed, config.seed if config.shared_sample else seed)
            for i, seed in enumerate(config.member_seeds())]


def _sample_key(member: _Member) -> tuple:
    """Prompts with equal keys draw the same examples and take the same steps: they can train together."""
    config = member.run.config
    return (config.data_config(), config.train_lang, config.shots, member.seed, member.sample_seed, config.batch_size,
            config.epochs, config.max_length, config.special_tokens, config.label_words, config.allow_subword_labels,
            config.resolved_engine())


def task_key(run: PlannedRun) -> tuple:
    """Runs with equal keys are best run by one worker: frozen runs whose (first) prompts train together."""
    config = run.config
    if not config.freeze:
        return (run.run_id,)
    return (config.model, config.dtype.value, *_sample_key(_members(run)[0]))


def _scoring_key(run: PlannedRun) -> tuple:
    c = run.config
    return (c.data_config(), c.label_words, c.allow_subword_labels, c.max_length, c.special_tokens, tuple(run.languages))


def run_group(
    runs: Sequence[PlannedRun], session: Session, on_record: Callable[[RunRecord], None], *, log=None,
) -> None:
    """Run ``runs`` (all on one model and dtype), calling ``on_record`` with each finished run's record.

    A run that fails is recorded as failed and the others go on, unless ``session.strict`` (one
    run from the command line), where its error propagates and nothing more is written.
    """
    log = log or _log
    if not runs:
        return
    loaded = session.model(runs[0].config)
    probes = [r for r in runs if r.config.method is Method.PROBE]
    frozen = [r for r in runs if r.config.freeze and r.config.method is Method.PROMPT]
    tuned = [r for r in runs if not r.config.freeze]
    by_sample: dict[tuple, list[_Member]] = {}
    for run in frozen:
        for member in _members(run):
            by_sample.setdefault(_sample_key(member), []).append(member)
    done: dict[str, dict[int, tuple[PromptClassifier, float]]] = {}
    failed: set[str] = set()
    for members in by_sample.values():
        members = [m for m in members if m.run.run_id not in failed]
        for member, outcome in _train_together(members, loaded, session, log):
            if isinstance(outcome, BaseException):
                if member.run.run_id not in failed:
                    failed.add(member.run.run_id)
                    on_record(_failed(member.run, outcome, loaded, time.time()))
            else:
                done.setdefault(member.run.run_id, {})[member.index] = outcome
    trained: list[tuple[PlannedRun, PromptClassifier, dict]] = []
    for run in frozen:
        if run.run_id in failed:
            continue
        outcomes = [done[run.run_id][i] for i in range(run.config.ensemble)]
        clf = PromptClassifier.ensemble_of([c for c, _ in outcomes], calibration=run.config.calibration_config())
        clf.fit_reference(session.data(run.config))
        clf.save(run.directory)
        trained.append((run, clf, {"train": round(sum(t for _, t in outcomes), 2)}))
    by_scoring: dict[tuple, list] = {}
    for item in trained:
        by_scoring.setdefault(_scoring_key(item[0]), []).append(item)
    for items in by_scoring.values():
        _evaluate_together(items, loaded, session, on_record, log)
    for run in tuned:
        _run_with_model_training(run, loaded, session, on_record, log)
    by_reading: dict[tuple, list[PlannedRun]] = {}
    for run in probes:
        by_reading.setdefault(_scoring_key(run), []).append(run)
    for group in by_reading.values():
        _run_probes(group, loaded, session, on_record, log)


def _run_probes(runs: list[PlannedRun], loaded, session, on_record, log) -> None:
    """Fit the probe baselines of runs that read text alike, then score them together (one text pass per language)."""
    from ..probe import PROBE_FILE, ProbeClassifier, eos_states, evaluate_probes

    first = runs[0].config
    started = time.time()
    seen: dict[str, object] = {}  # read-out states by text: samples of different seeds overlap

    def features(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in seen]
        if missing:
            for text, state in zip(missing, eos_states(loaded, missing, max_length=first.max_length,
                                                        special_tokens=first.special_tokens.value)):
                seen[text] = state
        import numpy as np

        return np.stack([seen[t] for t in texts])

    fitted = []
    for run in runs:
        c = run.config
        log(f"fitting the probe baseline ({c.short_name()}) on {c.shots} examples per class of {c.train_lang}")
        try:
            probe = ProbeClassifier.train(loaded, session.data(c), train_language=c.train_lang, shots=c.shots, seed=c.seed,
                                          max_length=c.max_length, special_tokens=c.special_tokens.value, features=features)
            probe.save(run.directory)
            fitted.append((run, probe))
        except Exception as exc:
            if session.strict:
                raise
            on_record(_failed(run, exc, loaded, started))
    if not fitted:
        return
    train_seconds = (time.time() - started) / len(fitted)
    log(f"scoring {len(fitted)} probe(s) on {len(runs[0].languages)} languages")
    eval_started = time.time()
    try:
        tables = evaluate_probes([p for _, p in fitted], session.data(first), runs[0].languages, progress=session.progress)
    except Exception as exc:
        if session.strict:
            raise
        for run, _ in fitted:
            on_record(_failed(run, exc, loaded, started))
        return
    seconds = (time.time() - eval_started) / len(fitted)
    for (run, probe), results in zip(fitted, tables):
        write_run_results(run.directory, probe.metadata, results, figures=session.class_figures)
        timings = {"train": round(train_seconds, 2), "evaluate": round(seconds, 2)}
        on_record(RunRecord(
            run_id=run.run_id, status=RunStatus.DONE.value, config=_canonical(run, loaded),
            results=results.to_dict(orient="records"), trainable_parameters=int(probe.coef.size + probe.intercept.size),
            stored_parameters=int(probe.coef.size + probe.intercept.size + probe.mean.size + probe.scale.size),
            stored_bytes=int((run.directory / PROBE_FILE).stat().st_size), prompt_file=f"{run.directory.name}/{PROBE_FILE}",
            timings={**timings, "total": round(sum(timings.values()), 2)}, versions=library_versions(),
            device=device_info(loaded.device, loaded.dtype), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            protocol="zero-shot", notes=[f"probe baseline: logistic regression with C={probe.metadata['C']} "
                                         "(chosen on the validation examples)"], data_checksum=data_checksum(run, session),
        ))


def _train_together(members: list[_Member], loaded, session, log) -> list[tuple[_Member, object]]:
    """Train prompts that share a sample and steps; each gets ``(classifier, seconds)`` or the error that stopped it."""
    if not members:
        return []
    first = members[0].run.config
    started = time.time()
    names = ", ".join(m.run.config.short_name() + (f" member {m.index}" if m.run.config.ensemble > 1 else "")
                      for m in members)
    together = f"{len(members)} prompts together ({names})" if len(members) > 1 else f"a prompt ({names})"
    try:
        data = session.data(first)
        verbalizer = build_verbalizer(loaded, first.label_word_map(data.labels(first.train_lang)), first.allow_subword_labels,
                                      data.labels(first.train_lang))
        examples = sample_few_shot(data, first.train_lang, first.shots, members[0].sample_seed)
        log(f"training {together} on {first.shots} examples per class of {first.train_lang}")
        configs = [replace(m.run.config.train_config(), seed=m.seed) for m in members]
        results = train_prompts(loaded, verbalizer, examples, [m.run.config.prompt_config() for m in members], configs,
                                progress=session.progress, desc=f"training x{len(members)}")
    except Exception as exc:  # one bad group is recorded and the sweep goes on
        if session.strict:
            raise
        return [(m, exc) for m in members]
    seconds = (time.time() - started) / len(members)
    out = []
    for member, config, result in zip(members, configs, results):
        if isinstance(result, TrainingDiverged):
            if result.best is not None and member.run.config.ensemble == 1:
                result = PromptClassifier.keep_best_before_divergence(
                    result, member.run.directory, loaded, verbalizer, data, examples, config,
                    train_language=first.train_lang, shots=first.shots, allow_first_subtoken=first.allow_subword_labels,
                    sample_seed=member.sample_seed)
            if session.strict:
                raise result
            out.append((member, result))
            continue
        clf = PromptClassifier.from_training(
            loaded, verbalizer, data, examples, result, config, train_language=first.train_lang, shots=first.shots,
            allow_first_subtoken=first.allow_subword_labels, seconds=seconds, sample_seed=member.sample_seed,
        )
        out.append((member, (clf, seconds)))
    return out


def _evaluate_together(items, loaded, session, on_record, log) -> None:
    """Score all runs' prompts in one text pass per language; each run votes with its own prompts and protocol."""
    run0 = items[0][0]
    started = time.time()
    prompts, scorers, spans = [], [], []
    for run, clf, _ in items:
        own = tuple(range(len(prompts), len(prompts) + clf.size))
        prompts += clf.prompts
        spans.append((len(scorers), clf.size))
        scorers.append(Scorer(own, clf.calibration))
        if clf.size > 1:  # each member's own results, from the same pass
            scorers += [Scorer((j,), clf.calibration) for j in own]
    count = f"{len(prompts)} prompts of {len(items)} runs" if len(items) > 1 else (
        f"the {len(prompts)} prompts of the ensemble" if len(prompts) > 1 else "the prompt")
    log(f"scoring {count} on {len(run0.languages)} languages")
    reference = stacked_reference([clf for _, clf, _ in items])  # each run standardizes to its own saved statistics
    try:
        all_results = evaluate_prompts(
            loaded, items[0][1].verbalizer, prompts, session.data(run0.config), run0.languages, scorers=scorers,
            max_length=run0.config.max_length, special_tokens=run0.config.special_tokens.value, progress=session.progress,
            reference=reference, headline=[at for at, _ in spans],  # each run's own vote, not its members
        )
    except Exception as exc:
        if session.strict:
            raise
        for run, _, _ in items:
            on_record(_failed(run, exc, loaded, started))
        return
    seconds = (time.time() - started) / len(items)
    for (run, clf, timings), (at, size) in zip(items, spans):
        members = all_results[at + 1 : at + 1 + size] if size > 1 else None
        on_record(_finish(run, clf, all_results[at], loaded, {**timings, "evaluate": round(seconds, 2)},
                          trainable_model=0, member_results=members, figures=session.class_figures,
                          checksum=data_checksum(run, session)))


def _run_with_model_training(run: PlannedRun, loaded: LoadedModel, session, on_record, log) -> None:
    """Train prompt and model, evaluate at once, then put the model's original weights back."""
    log(f"training {run.config.short_name()} with the model's weights too (model_lr {run.config.train_config().model_lr:g})")
    started = time.time()
    original = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    try:
        data = session.data(run.config)
        labels = data.labels(run.config.train_lang)
        verbalizer = build_verbalizer(loaded, run.config.label_word_map(labels), run.config.allow_subword_labels, labels)
        examples = sample_few_shot(data, run.config.train_lang, run.config.shots, run.config.seed)
        config = run.config.train_config()
        [result] = train_prompts(loaded, verbalizer, examples, [run.config.prompt_config()], [config],
                                 progress=session.progress, desc="training with the model")
        if isinstance(result, Exception):
            raise result
        train_seconds = time.time() - started
        clf = PromptClassifier.from_training(
            loaded, verbalizer, data, examples, result, config, train_language=run.config.train_lang,
            shots=run.config.shots, allow_first_subtoken=run.config.allow_subword_labels, seconds=train_seconds,
        )
        clf.calibration = run.config.calibration_config()
        clf.fit_reference(data)
        clf.save(run.directory)
        model_file = None
        if run.config.save_model:
            from safetensors.torch import save_model

            from ..files import write_with_atomic

            write_with_atomic(run.directory / MODEL_FILE, lambda tmp: save_model(loaded.model, str(tmp)))
            model_file = MODEL_FILE
        eval_started = time.time()
        [results] = evaluate_prompts(
            loaded, verbalizer, [clf.prompt], data, run.languages, max_length=run.config.max_length,
            scorers=[Scorer((0,), clf.calibration)], reference=clf.reference,
            special_tokens=run.config.special_tokens.value, engine="naive", progress=session.progress,
        )
        timings = {"train": round(train_seconds, 2), "evaluate": round(time.time() - eval_started, 2)}
        model_params = sum(p.numel() for p in loaded.model.parameters())
        on_record(_finish(run, clf, results, loaded, timings, trainable_model=model_params, model_file=model_file,
                          figures=session.class_figures, checksum=data_checksum(run, session)))
    except Exception as exc:
        if session.strict:
            raise
        on_record(_failed(run, exc, loaded, started))
    finally:
        loaded.model.load_state_dict(original)


def data_checksum(run: PlannedRun, session: Session) -> str:
    """The checksum of what ``run`` read: its training language's train and dev splits and each target's test split."""
    c = run.config
    return session.data(c).checksum([(c.train_lang, "train"), (c.train_lang, "dev"), *((lang, "test") for lang in run.languages)])


def _finish(run: PlannedRun, clf: PromptClassifier, results, loaded, timings: dict, *, trainable_model: int,
            model_file: str | None = None, member_results=None, figures: bool = False, checksum: str | None = None) -> RunRecord:
    write_run_results(run.directory, {**clf.metadata, "calibration": clf.calibration.to_dict()}, results,
                      figures=figures)
    if clf.soft_prompts is not None:
        prompt_params = sum(p.numel() for sp in clf.soft_prompts for p in sp.parameters())
    else:
        prompt_params = sum(p.numel() for p in clf.prompts)
    stored_bytes = (run.directory / PROMPT_FILE).stat().st_size
    stored_params = sum(p.numel() for p in clf.prompts)
    notes = []
    if not run.config.freeze:
        if model_file:
            stored_bytes += (run.directory / model_file).stat().st_size
            stored_params += trainable_model
        else:
            notes.append("the model's weights trained too and were not saved (save_model: false): "
                         "the record keeps the metrics and the prompt only")
    history = clf.metadata.get("history", [])
    return RunRecord(
        run_id=run.run_id,
        status=RunStatus.DONE.value,
        config=_canonical(run, loaded),
        results=results.to_dict(orient="records"),
        best_epoch=clf.metadata.get("best_epoch"),
        best_val_loss=clf.metadata.get("best_val_loss"),
        history=history,
        trainable_parameters=int(prompt_params + trainable_model),
        stored_parameters=int(stored_params),
        stored_bytes=int(stored_bytes),
        prompt_file=str(run.directory.name + "/" + PROMPT_FILE),
        model_file=str(run.directory.name + "/" + model_file) if model_file else None,
        timings={**timings, "total": round(sum(timings.values()), 2)},
        versions=library_versions(),
        device=device_info(loaded.device, loaded.dtype),
        notes=notes,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        protocol=clf.calibration.name,
        member_results=[m.to_dict(orient="records") for m in member_results] if member_results else None,
        data_checksum=checksum,
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
    return run.config.canonical(dtype=str(loaded.dtype).removeprefix("torch."), languages=run.languages)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_one(config: RunConfig, directory: Path, session: Session | None = None) -> RunRecord:
    """Run one configuration into ``directory`` (``xlspt run``), through the same path as a sweep's runs.

    Errors propagate (nothing is recorded as failed); the folder gets the run files and ``record.json``.
    """
    from ..files import write_json_atomic
    from .outputs import RECORD_FILE

    session = session or Session(strict=True)
    planned = plan(config, session, directory)
    records: list[RunRecord] = []

    def keep(record: RunRecord) -> None:
        write_json_atomic(planned.directory / RECORD_FILE, record.to_dict())
        records.append(record)

    run_group([planned], session, keep)
    return records[0]
