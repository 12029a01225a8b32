"""Sweeps: expand a spec, skip what the store holds, run the rest on this machine or on Ray.

The store is the only shared state: every worker claims runs under their locks and writes
their records, so a sweep interrupted at any point (Ctrl-C, ``kill -9``) and started again runs
only what is missing, and ``--status`` can read the store while workers write it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from enum import Enum

from ..errors import XlsptError
from .executors import Executor, executor_for
from .records import RunStatus
from .runner import PlannedRun, Session, plan
from .spec import SweepSpec
from .store import ResultStore

logger = logging.getLogger(__name__)


@dataclass
class SweepStatus:
    """The runs of a spec by status; ``as_json`` gives the integer counts ``--status --json`` prints."""

    runs: list[PlannedRun]
    status: dict[str, RunStatus]
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each, printed under the table

    def count(self, status: RunStatus) -> int:
        return sum(1 for s in self.status.values() if s == status)

    def as_json(self) -> dict[str, int]:
        return {"total": len(self.runs), **{s.value: self.count(s) for s in RunStatus}}

    def table(self) -> str:
        lines = [f"{'run_id':<16}  {'status':<8}  run"]
        for run in self.runs:
            state = self.status[run.run_id]
            line = f"{run.run_id:<16}  {state.value:<8}  {run.config.model} {run.config.short_name()}"
            if state == RunStatus.FAILED:
                line += f"  error: {self.errors.get(run.run_id, '').splitlines()[0] if self.errors.get(run.run_id) else ''}"
            lines.append(line)
        counts = self.as_json()
        lines.append(", ".join(f"{v} {k}" for k, v in counts.items()))
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def plan_sweep(spec: SweepSpec, store: ResultStore, session: Session) -> list[PlannedRun]:
    """Each distinct run of the spec (by run id) with its folder in the store."""
    planned: dict[str, PlannedRun] = {}
    for config in spec.runs:
        run = plan(config, session, store.run_dir)
        planned.setdefault(run.run_id, run)
    return list(planned.values())


def sweep_status(spec: SweepSpec, store: ResultStore, session: Session | None = None) -> SweepStatus:
    session = session or Session(progress=False)
    runs = plan_sweep(spec, store, session)
    status, errors = {}, {}
    for run in runs:
        record = store.record(run.run_id)
        if record is not None:
            status[run.run_id] = RunStatus(record.status)
            if record.error:
                errors[run.run_id] = record.error
        else:
            status[run.run_id] = RunStatus.RUNNING if store.is_running(run.run_id) else RunStatus.PENDING
    pending = [run for run in runs if status[run.run_id] == RunStatus.PENDING]
    return SweepStatus(runs, status, errors, _other_data(pending, store, session.device))


def _other_data(pending: list[PlannedRun], store: ResultStore, device: str | None) -> list[str]:
    """A line when pending runs are in the store with every setting alike but the data: the data given is not the
    data the records read (or the records are of a store made before ids named data by content)."""
    from .config import DATA_CHECKSUM_PREFIX

    def settings(config: dict) -> str:
        return json.dumps({k: v for k, v in config.items() if k != "data"}, sort_keys=True, default=str)

    if not pending:
        return []
    wanted = {settings(run.config.canonical(dtype=run.config.resolved_dtype(device), languages=run.languages)): run
              for run in pending}
    theirs = [record for record in store.records() if settings(record.config) in wanted]
    if not theirs:
        return []
    here = pending[0].data_checksum[:12]
    there = sorted({str(r.data_checksum or r.config.get("data"))[:12] for r in theirs})
    if any(not str(r.config.get("data", "")).startswith(DATA_CHECKSUM_PREFIX) for r in theirs):
        return [f"{len(theirs)} of the pending runs are in the store under ids of an earlier xlspt that named the data "
                f"by its folder: move them to ids by content with `python results/rekey.py {store.root}`"]
    return [f"{len(theirs)} of the pending runs are in the store with every setting alike but the data: the records "
            f"read data with checksum {', '.join(there)}..., the data given has {here}... (other content, so other runs)"]


def run_sweep(
    spec: SweepSpec,
    store: ResultStore,
    *,
    executor: Executor | str = Executor.LOCAL,
    ray_address: str | None = None,
    retry_failed: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> SweepStatus:
    """Run every run of ``spec`` that ``store`` lacks; returns the status afterwards."""
    executor = Executor(executor)
    session = Session(device=device, progress=progress)
    before = sweep_status(spec, store, session)
    todo = [r for r in before.runs if before.status[r.run_id] == RunStatus.PENDING
            or (retry_failed and before.status[r.run_id] == RunStatus.FAILED)]
    logger.info(f"sweep {spec.source}: {len(before.runs)} runs; {before.count(RunStatus.DONE)} done, "
                f"{before.count(RunStatus.FAILED)} failed, {before.count(RunStatus.RUNNING)} running elsewhere, {len(todo)} to run "
                f"({executor.value}) into {store.root}")
    if todo:
        started = time.time()
        executor_for(executor, ray_address=ray_address).run(todo, store, session, retry_failed=retry_failed)
        logger.info(f"sweep finished in {time.time() - started:.0f} s")
    return sweep_status(spec, store, session)


def sweep_from(
    spec_path: str | None, preset: str | None, store_root: str, overrides: dict, *, status_only: bool = False,
    executor: Executor | str = Executor.LOCAL, ray_address: str | None = None, retry_failed: bool = False,
    device: str | None = None, progress: bool = True,
) -> SweepStatus:
    """``xlspt sweep``: the spec of a file or a preset, with ``overrides`` (field -> one value), run into the store
    ``store_root`` (or, with ``status_only``, only its status read)."""
    import dataclasses

    from .spec import load_spec, preset_path

    if bool(spec_path) == bool(preset):
        raise XlsptError("give a sweep spec file or --preset NAME (one of them)")
    overrides = {k: (v.value if isinstance(v, Enum) else v) for k, v in overrides.items()}
    spec = load_spec(spec_path or preset_path(preset), overrides)
    if preset:
        spec = dataclasses.replace(spec, source=f"the {preset} preset")
    store = ResultStore(store_root, create=not status_only)
    if status_only:
        return sweep_status(spec, store, Session(device=device, progress=False))
    return run_sweep(spec, store, executor=executor, ray_address=ray_address, retry_failed=retry_failed, device=device,
                     progress=progress)


def require_runs(spec: SweepSpec) -> None:
    if not spec.runs:
        raise XlsptError(f"{spec.source} expands to no runs: give every key at least one value")
