"""Label a corpus with several saved classifiers in one pass per chunk (``xlspt label``).

Every input shard gets one output shard with one row per input row: the row's id (or its source file and row
number) and, per task, its label and probability (and top-k). A chunk of rows is scored through the one scoring
path (:func:`~xlspt.classifiers.classify_requests`): each distinct text is read once and the prompts of every task
that reads alike are packed after it. Calibrations are applied per task as ``predict`` applies them; ``batch``
estimates its prior per chunk and language.

Kill-safe: a shard's output is written to a temporary file and moved into place once complete, after its counts
(``.done/``), so a rerun with the same arguments labels what is missing and nothing twice; a rerun with other
tasks, inputs or settings is refused. The manifest (``manifest.json``) says what was labelled with what.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd

from .._version import __version__
from ..calibration import CalibrationConfig, Protocol
from ..classifiers import PassOptions, ScoreRequest, classify_requests
from ..sidecar import text_fingerprint
from ..data.languages import canonical_language
from ..engine import Engine
from ..errors import XlsptError
from ..files import write_json_atomic
from ..pipeline import LoadOptions
from ..progress import checkpoint, progress_bar
from ..serve.tasks import TaskSet
from ..sidecar import Sidecar
from .config import CorpusExecutor, LabelConfig
from .shards import (DONE_FOLDER, SCAN_ROWS, TEXT_FILE_COLUMN, InputShard, OutputShard, ShardWriter, check_unique_ids, columns_of,
                     count_rows, find_shards, read_chunks, remove_temporaries)

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: How rows of a ``batch``-calibrated task are scored where their chunk holds too few rows of their language.
BATCH_EARLIER = "batch, prior from the shard's previous chunk of the language (too few rows in this chunk)"
BATCH_NONE = "zero-shot: the shard has too few rows of the language to estimate a prior"


@dataclass
class LabelOutcome:
    """What a label job did: the output folder, shards labelled now and before, rows, and seconds."""

    output: Path
    shards: int
    labelled_now: int
    rows: int
    rows_now: int
    seconds: float
    manifest: dict = field(repr=False, default_factory=dict)


def label_corpus(
    input: str, sources: Mapping[str, str], output: str | Path, config: LabelConfig = LabelConfig(), *,
    load: LoadOptions = LoadOptions(), overwrite: bool = False, ray_address: str | None = None, progress: bool = True,
) -> LabelOutcome:
    """Label every row of ``input`` (a file, a folder or a glob) by every task (name -> folder or Hub id) into
    ``output``; what was labelled before with the same tasks, inputs and settings is kept."""
    started = time.perf_counter()
    shards = find_shards(input)
    root = Path(output).expanduser()
    _check_output_place(root, input)
    _check_columns(shards, config)
    _check_languages(shards, config)
    found = TaskSet.sidecars(sources, load)
    _check_tasks(found, config)
    if config.id_column:
        check_unique_ids(shards, config.id_column)
    _refuse_self_trained_texts(found, shards, config)
    plan = _plan(found, shards, config, load)
    outputs = _claim_output(root, plan, shards, config, overwrite)
    todo = [(s, o) for s, o in zip(shards, outputs) if not o.is_complete()]
    _write_manifest(root, plan, shards, outputs)  # what is being labelled with what, from the start
    if todo:
        total = sum(count_rows(s, config.text_column) for s, _ in todo)
        logger.info(f"labelling {len(todo)} of {len(shards)} shards ({total} rows) with {len(found)} task{'s' * (len(found) > 1)} "
                    f"({', '.join(found)}) in one pass{'' if len(todo) == len(shards) else f'; {len(shards) - len(todo)} done before'}")
        folders = {name: str(folder) for name, (folder, _) in found.items()}
        if config.executor is CorpusExecutor.RAY:
            _label_on_ray(todo, folders, config, load, ray_address, total, lambda: _write_manifest(root, plan, shards, outputs))
        else:
            _label_here(todo, folders, config, load, total, progress, lambda: _write_manifest(root, plan, shards, outputs))
    remove_temporaries(root)
    manifest = _write_manifest(root, plan, shards, outputs)
    rows_now = sum(o.counts()["rows"] for _, o in todo)
    return LabelOutcome(root, len(shards), len(todo), manifest["rows"], rows_now, time.perf_counter() - started, manifest)


# ---------------------------------------------------------------- checks before any row is labelled


def _check_output_place(root: Path, input: str) -> None:
    if root.exists() and not root.is_dir():
        raise XlsptError(f"--output {root} is a file: give a folder for the labelled shards")
    source = Path(input).expanduser()
    if source.is_dir() and root.resolve().is_relative_to(source.resolve()):
        raise XlsptError(f"--output {root} is inside --input {input}: a rerun would read the labels as input; "
                         "write them elsewhere")


def _check_columns(shards: Sequence[InputShard], config: LabelConfig) -> None:
    wanted = {"--text-column": config.text_column, "--id-column": config.id_column, "--lang-column": config.lang_column}
    for shard in shards:
        columns = columns_of(shard)
        if shard.kind == "text":
            extra = [flag for flag in ("--id-column", "--lang-column") if wanted[flag]]
            if extra:
                raise XlsptError(f"{shard.name} is plain text (a text a line, no columns): drop {extra[0]}, or give "
                                 "a CSV, JSON Lines or Parquet file")
            continue
        for flag, column in wanted.items():
            if column and column not in columns:
                listed = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
                raise XlsptError(f"{shard.name} has no column {column!r} (it has {listed}): name the right one with {flag}")


def _check_languages(shards: Sequence[InputShard], config: LabelConfig) -> None:
    """Refuse a language code that names a language of several scripts (``zho``), before any row is labelled."""
    if not config.lang_column:
        return
    seen: set = set()
    for shard in shards:
        offset = 0
        for chunk in read_chunks(shard, [config.lang_column], SCAN_ROWS):
            for value in set(chunk[config.lang_column].dropna().unique()) - seen:
                try:
                    canonical_language(str(value))
                except XlsptError as exc:
                    row = offset + int((chunk[config.lang_column] == value).to_numpy().argmax())
                    raise XlsptError(f"{shard.name} row {row}: {exc}") from None
                seen.add(value)
            offset += len(chunk)


def _check_tasks(found: Mapping[str, tuple[Path, Sidecar]], config: LabelConfig) -> None:
    taken = {config.id_column} if config.id_column else {"source", "row"}
    for name, (_, sidecar) in found.items():
        calibration: CalibrationConfig | None = getattr(sidecar, "calibration", None)
        if calibration is None:
            continue
        if calibration.protocol is Protocol.UNLABELED:
            raise XlsptError(f"task {name!r} calibrates with unlabeled texts of each language ({calibration.name}), which "
                             "a label job has none of apart from the corpus: label with a task of another protocol "
                             "(batch reads the corpus itself)")
        if calibration.protocol is Protocol.CONTENT_FREE and calibration.by_script and not (config.lang or config.lang_column):
            raise XlsptError(f"task {name!r} calibrates in each text's script ({calibration.name}): give --lang-column "
                             "COLUMN (a language code per row) or --lang CODE (one language for every row)")
        if calibration.standardize:
            raise XlsptError(f"task {name!r} standardizes each language's read-out on unlabeled text ({calibration.name}): "
                             "label with a task that does not")
        clash = taken & set(_task_columns(name, config))
        if clash:
            raise XlsptError(f"task {name!r} would write a column named like --id-column ({clash.pop()}): rename the task")


def _refuse_self_trained_texts(found: Mapping[str, tuple[Path, Sidecar]], shards: Sequence[InputShard],
                               config: LabelConfig) -> None:
    """Refuse a corpus that holds texts a self-trained task was trained on (its labels of them would not be honest)."""
    seen = {name: set(record.fingerprints) for name, (_, sidecar) in found.items()
            if (record := getattr(sidecar, "self_training", None))}
    if not seen:
        return
    for shard in shards:
        offset = 0
        for chunk in read_chunks(shard, [_text_column(shard, config)], SCAN_ROWS):
            for row, text in enumerate(chunk.iloc[:, 0], start=offset):
                if isinstance(text, str):
                    digest = text_fingerprint(text)
                    for name, fingerprints in seen.items():
                        if digest in fingerprints:
                            raise XlsptError(f"{shard.name} row {row} is a text task {name!r} was self-trained on: "
                                             "label with the task from before self-training, or drop such texts")
            offset += len(chunk)


def _text_column(shard: InputShard, config: LabelConfig) -> str:
    return TEXT_FILE_COLUMN if shard.kind == "text" else config.text_column


def _task_columns(name: str, config: LabelConfig) -> list[str]:
    return [f"{name}_label", f"{name}_probability", *([f"{name}_top_k"] if config.top_k else [])]


# ---------------------------------------------------------------- the output folder and its manifest


def _plan(found: Mapping[str, tuple[Path, Sidecar]], shards: Sequence[InputShard], config: LabelConfig,
          load: LoadOptions) -> dict:
    """What the labels depend on: tasks (by their weights' checksums), model, dtype, settings and inputs."""
    first = next(iter(found.values()))[1]
    def described(sidecar: Sidecar) -> dict:
        calibration = getattr(sidecar, "calibration", None)  # a probe is scored as it is
        return {"method": sidecar.method, "labels": list(sidecar.labels), "sha256": sidecar.sha256,
                "protocol": calibration.name if calibration is not None else sidecar.method,
                "prompts": len(getattr(sidecar, "members", ())) or None}

    tasks = {name: described(sidecar) for name, (_, sidecar) in found.items()}
    plan = {"tasks": tasks, "model": load.model or first.model, "dtype": load.dtype or first.dtype,
            "settings": config.settings(), "inputs": [s.identity() for s in shards]}
    plan["fingerprint"] = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
    return plan


def _claim_output(root: Path, plan: dict, shards: Sequence[InputShard], config: LabelConfig,
                  overwrite: bool) -> list[OutputShard]:
    """The output shards; refuses a folder that holds another job's labels (or anything else) unless
    ``overwrite``, which removes that job's files first."""
    manifest_path = root / MANIFEST
    earlier = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    if earlier is not None and earlier.get("fingerprint") != plan["fingerprint"]:
        if not overwrite:
            changed = [key for key in ("tasks", "model", "dtype", "settings", "inputs") if earlier.get(key) != plan[key]]
            raise XlsptError(f"--output {root} holds labels made with other {' and '.join(changed) or 'settings'}: "
                             "label into a new --output, or add --overwrite to start again")
        for entry in earlier.get("shards", []):
            (root / entry["output"]).unlink(missing_ok=True)
        shutil.rmtree(root / DONE_FOLDER, ignore_errors=True)
        manifest_path.unlink()
    elif earlier is None and root.is_dir() and any(root.iterdir()):
        raise XlsptError(f"--output {root} holds files that are not a label job's: choose a new or empty folder")
    names = [s.name for s in shards]
    outputs = [OutputShard.of(root, s, config.output_format, names) for s in shards]
    root.mkdir(parents=True, exist_ok=True)
    remove_temporaries(root)
    return outputs


def _write_manifest(root: Path, plan: dict, shards: Sequence[InputShard], outputs: Sequence[OutputShard]) -> dict:
    entries = []
    for shard, out in zip(shards, outputs):
        entry = {"input": shard.name, "output": out.path.relative_to(root).as_posix()}
        entries.append({**entry, **out.counts()} if out.is_complete() else {**entry, "status": "to do"})
    complete = all(out.is_complete() for out in outputs)
    manifest = {"status": "complete" if complete else "running", "xlspt_version": __version__, **plan,
                "rows": sum(e.get("rows", 0) for e in entries), "shards": entries,
                "calibration": ("batch estimates each task's prior per chunk of the settings' chunk_rows and per "
                                f"language; where a chunk holds too few rows of a language: {BATCH_EARLIER}, else "
                                f"{BATCH_NONE} (each shard's counts say how many rows each way)")}
    write_json_atomic(root / MANIFEST, manifest)
    return manifest


# ---------------------------------------------------------------- labelling shards


class CorpusLabeller:
    """The tasks of a label job on one loaded model: labels chunks of rows, and whole shards."""

    def __init__(self, tasks: TaskSet, config: LabelConfig):
        self.tasks, self.config = tasks, config
        # auto: one full pass where a pass holds one prompt (as predict), else each text's states once for all prompts
        self.options = PassOptions(batch_size=config.batch_size, engine=Engine.AUTO)
        self._languages: dict = {}

    @classmethod
    def load(cls, folders: Mapping[str, str], config: LabelConfig, load: LoadOptions) -> "CorpusLabeller":
        return cls(TaskSet.load(folders, load, config.batch_size), config)

    def column_types(self) -> dict:
        """The Arrow type of each task column (a column that is null in a whole chunk keeps its type)."""
        import pyarrow as pa

        types = {}
        for name in self.tasks.tasks:
            label, probability, *top = _task_columns(name, self.config)
            types[label], types[probability] = pa.string(), pa.float32()
            if top:
                types[top[0]] = pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float32())]))
        return types

    def language_of(self, value) -> str | None:
        if value not in self._languages:
            self._languages[value] = canonical_language(value.strip()) if isinstance(value, str) and value.strip() else None
        return self._languages[value]

    def label_chunk(self, texts: pd.Series, languages: Sequence[str | None], counts: dict, earlier: dict) -> pd.DataFrame:
        """Each task's columns for one chunk (rows in order; a missing, empty or non-string text gets nulls).
        ``counts`` gathers how rows were scored; ``earlier`` keeps each language's last chunk for ``batch``."""
        n = len(texts)
        valid = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        counts["rows"] += n
        counts["empty"] += n - len(valid)
        groups: dict[str | None, list[int]] = {}
        for i in valid:
            groups.setdefault(languages[i], []).append(i)
        counts["without_language"] += len(groups.get(None, ())) if (self.config.lang or self.config.lang_column) else 0
        requests, owners = [], []
        for lang, rows in groups.items():
            group_texts = [texts.iloc[i] for i in rows]
            for name in sorted(self.tasks.tasks):
                clf = self.tasks.tasks[name].classifier
                calibration, unlabeled, how = self._calibration(clf, len(group_texts), earlier.get(lang))
                requests.append(ScoreRequest(clf, group_texts, None, calibration, unlabeled, lang, self.config.top_k,
                                             self.config.min_confidence))
                owners.append((name, rows))
                tally = counts["scored"].setdefault(name, {})
                tally[how] = tally.get(how, 0) + len(rows)
            if len(group_texts) >= self._largest_min_batch():
                earlier[lang] = group_texts
        columns = {c: [None] * n for name in self.tasks.tasks for c in _task_columns(name, self.config)}
        for (name, rows), frame in zip(owners, classify_requests(requests, self.options) if requests else []):
            label, probability, *top = _task_columns(name, self.config)
            for i, row in zip(rows, frame.itertuples(index=False)):
                columns[label][i], columns[probability][i] = row.label, row.probability
                if top:
                    columns[top[0]][i] = row.top_k
        return pd.DataFrame(columns)

    def _largest_min_batch(self) -> int:
        return max([t.classifier.calibration.min_batch for t in self.tasks.tasks.values()
                    if t.classifier.takes_calibration and t.classifier.calibration.protocol is Protocol.BATCH] or [0])

    @staticmethod
    def _calibration(clf, size: int, earlier: list[str] | None):
        """The calibration, unlabeled texts and a description of how a group of ``size`` rows is scored by ``clf``."""
        if not clf.takes_calibration:
            return None, (), clf.protocol_label()
        own = clf.calibration
        if own.protocol is not Protocol.BATCH or size >= own.min_batch:
            return None, (), own.name
        if earlier is not None and len(earlier) >= own.min_batch:
            return dataclasses.replace(own, protocol=Protocol.UNLABELED), earlier, BATCH_EARLIER
        return CalibrationConfig(), (), BATCH_NONE

    def label_shard(self, shard: InputShard, out: OutputShard, on_rows: Callable[[int], None] = lambda n: None) -> dict:
        """Label one shard into ``out`` (moved into place when complete); its counts."""
        started = time.perf_counter()
        config = self.config
        text_column = _text_column(shard, config)
        columns = [text_column, *(c for c in (config.id_column, config.lang_column) if c)]
        counts: dict = {"rows": 0, "empty": 0, "without_language": 0, "scored": {}}
        earlier: dict = {}
        writer = ShardWriter(out, config.output_format, self.column_types())
        try:
            offset = 0
            for chunk in read_chunks(shard, columns, config.chunk_rows):
                languages = ([self.language_of(v) for v in chunk[config.lang_column]] if config.lang_column
                             else [self.language_of(config.lang)] * len(chunk))
                labels = self.label_chunk(chunk[text_column], languages, counts, earlier)
                ids = (chunk[[config.id_column]].reset_index(drop=True) if config.id_column
                       else pd.DataFrame({"source": shard.name, "row": range(offset, offset + len(chunk))}))
                writer.write(pd.concat([ids, labels], axis=1))
                offset += len(chunk)
                on_rows(len(chunk))
                checkpoint()
            counts["seconds"] = round(time.perf_counter() - started, 2)
            writer.commit(counts)
        except BaseException:
            writer.discard()
            raise
        return counts


def _label_here(todo, folders, config: LabelConfig, load: LoadOptions, total: int, progress: bool,
                update_manifest: Callable[[], object]) -> None:
    labeller = CorpusLabeller.load(folders, config, load)
    started, done = time.perf_counter(), 0
    with progress_bar(total=total, unit="rows", desc="labelling", disable=not progress) as bar:
        for k, (shard, out) in enumerate(todo, start=1):
            counts = labeller.label_shard(shard, out, bar.update)
            done += counts["rows"]
            logger.info(_shard_line(k, len(todo), shard, counts, done, total, time.perf_counter() - started))
            update_manifest()


def _shard_line(k: int, shards: int, shard: InputShard, counts: dict, done: int, total: int, seconds: float) -> str:
    rate = done / seconds if seconds > 0 else 0.0
    left = (total - done) / rate if rate > 0 else 0.0
    empty = f", {counts['empty']} without text" if counts["empty"] else ""
    return (f"[{k}/{shards}] {shard.name}: {counts['rows']} rows{empty} in {counts['seconds']:.0f} s; "
            f"{done}/{total} rows, {rate:.1f} rows/s, about {left:.0f} s left")


# ---------------------------------------------------------------- on Ray


class _ShardWorker:
    """A Ray actor: loads the model and the tasks once, then labels the shards it is handed."""

    def __init__(self, folders: dict, config: dict, load: LoadOptions, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.labeller = CorpusLabeller.load(folders, LabelConfig(**config), load)

    def label(self, path: str, name: str, output: str, done: str) -> tuple[str, dict, str]:
        import ray

        counts = self.labeller.label_shard(InputShard(Path(path), name), OutputShard(Path(output), Path(done)))
        return name, counts, ray.get_runtime_context().get_node_id()[:8]


def _label_on_ray(todo, folders, config: LabelConfig, load: LoadOptions, address: str | None, total: int,
                  update_manifest: Callable[[], object]) -> None:
    from ray.util import ActorPool

    from ..study.executors import ray_instance

    with ray_instance(address) as ray:
        resources = ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 1)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        workers = min(config.workers or (int(gpus) if gpus else nodes), len(todo))
        # An actor that dies (killed, out of memory) is started again and its shard retried from the start: the
        # shard's output appears only when complete, so no row is written twice. Ray limits an actor to one thread
        # per CPU it asks for; it asks for one (so that it fits any node) and then uses its share of the cluster's.
        worker = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=-1)(_ShardWorker)
        settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        threads = max(1, int(cpus // workers))
        actors = [worker.options(scheduling_strategy="SPREAD").remote(folders, settings, load, threads)
                  for _ in range(workers)]
        logger.info(f"ray: {workers} actor(s) on {nodes} node(s){f' with {gpus:.0f} GPUs' if gpus else ''}, {threads} thread(s) "
                    "each, each loading the model once")
        started, done = time.perf_counter(), 0
        jobs = [(str(s.path.resolve()), s.name, str(o.path.resolve()), str(o.done.resolve())) for s, o in todo]
        shards = {s.name: s for s, _ in todo}
        for k, (name, counts, node) in enumerate(ActorPool(actors).map_unordered(lambda a, job: a.label.remote(*job), jobs),
                                                 start=1):
            done += counts["rows"]
            logger.info(_shard_line(k, len(todo), shards[name], counts, done, total, time.perf_counter() - started) + f" [node {node}]")
            update_manifest()
