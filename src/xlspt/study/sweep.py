"""Sweeps: expand a spec, skip what the store holds, run the rest on this machine or on Ray.

The store is the only shared state: every worker claims runs under their locks and writes
their records, so a sweep interrupted at any point (Ctrl-C, ``kill -9``) and started again runs
only what is missing, and ``--status`` can read the store while workers write it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from ..errors import XlsptError
from .records import RunRecord, RunStatus
from .runner import PlannedRun, Session, plan, run_group
from .spec import SweepSpec
from .store import ResultStore


class Executor(str, Enum):
    """Where runs execute: in this process, or as Ray tasks (a local instance or a cluster)."""

    LOCAL = "local"
    RAY = "ray"


@dataclass
class SweepStatus:
    """The runs of a spec by status; ``as_json`` gives the integer counts ``--status --json`` prints."""

    runs: list[PlannedRun]
    status: dict[str, RunStatus]
    errors: dict[str, str] = field(default_factory=dict)

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
        return "\n".join(lines)


def plan_sweep(spec: SweepSpec, store: ResultStore, session: Session) -> list[PlannedRun]:
    """Each distinct run of the spec (by run id) with its folder in the store."""
    planned: dict[str, PlannedRun] = {}
    for config in spec.runs:
        run = plan(config, session, store.run_dir)
        planned.setdefault(run.run_id, run)
    return list(planned.values())


def sweep_status(spec: SweepSpec, store: ResultStore, session: Session | None = None) -> SweepStatus:
    runs = plan_sweep(spec, store, session or Session(progress=False))
    status, errors = {}, {}
    for run in runs:
        record = store.record(run.run_id)
        if record is not None:
            status[run.run_id] = RunStatus(record.status)
            if record.error:
                errors[run.run_id] = record.error
        else:
            status[run.run_id] = RunStatus.RUNNING if store.is_running(run.run_id) else RunStatus.PENDING
    return SweepStatus(runs, status, errors)


def model_groups(runs: list[PlannedRun], dtype_of: Callable[[PlannedRun], str]) -> list[list[PlannedRun]]:
    """Runs grouped by (model, dtype): one model load per group."""
    groups: dict[tuple, list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault((run.config.model, dtype_of(run)), []).append(run)
    return list(groups.values())


def run_sweep(
    spec: SweepSpec,
    store: ResultStore,
    *,
    executor: Executor | str = Executor.LOCAL,
    ray_address: str | None = None,
    retry_failed: bool = False,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SweepStatus:
    """Run every run of ``spec`` that ``store`` lacks; returns the status afterwards."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    executor = Executor(executor)
    session = Session(device=device, progress=progress)
    before = sweep_status(spec, store, session)
    todo = [r for r in before.runs if before.status[r.run_id] == RunStatus.PENDING
            or (retry_failed and before.status[r.run_id] == RunStatus.FAILED)]
    log(f"sweep {spec.source}: {len(before.runs)} runs; {before.count(RunStatus.DONE)} done, "
        f"{before.count(RunStatus.FAILED)} failed, {before.count(RunStatus.RUNNING)} running elsewhere, {len(todo)} to run "
        f"({executor.value}) into {store.root}")
    if todo:
        started = time.time()
        if executor == Executor.LOCAL:
            run_local(todo, store, session, retry_failed=retry_failed, log=log, total=len(todo))
        else:
            from .executors import run_on_ray

            run_on_ray(todo, store, address=ray_address, retry_failed=retry_failed, device=device, log=log)
        log(f"sweep finished in {time.time() - started:.0f} s")
    return sweep_status(spec, store, session)


def run_local(todo: list[PlannedRun], store: ResultStore, session: Session, *, retry_failed: bool, log, total: int) -> None:
    """Run the claimed runs group by group in this process."""
    finished = [0]

    def on_record(record: RunRecord) -> None:
        store.write_record(record)
        finished[0] += 1
        log(f"[{finished[0]}/{total}] {describe(record)}")

    for group in model_groups(todo, lambda run: run.config.resolved_dtype(session.device)):
        with store.claim([r.run_id for r in group], retry_failed=retry_failed) as owned:
            mine = [r for r in group if r.run_id in set(owned)]
            if len(mine) < len(group):
                log(f"{len(group) - len(mine)} run(s) of this group are done or running elsewhere: skipped")
            run_group(mine, session, on_record, log=log)


def describe(record: RunRecord) -> str:
    """One line for a finished run: its id, its settings and its mean accuracy (or its error)."""
    c = record.config
    name = f"{c.get('model')} len{c.get('prompt_length')} reparam{c.get('reparam_hidden')} " \
           f"{'MF' if c.get('freeze') else 'noMF'} {c.get('shots')}shot seed{c.get('seed')}"
    if record.status != RunStatus.DONE.value:
        return f"{record.run_id} {name}: FAILED: {(record.error or '').splitlines()[0]}"
    accuracies = [r["accuracy"] for r in record.results]
    mean = 100 * sum(accuracies) / len(accuracies) if accuracies else float("nan")
    return f"{record.run_id} {name}: mean accuracy {mean:.1f}% over {len(accuracies)} languages ({record.timings.get('total', 0):.0f} s)"


def require_runs(spec: SweepSpec) -> None:
    if not spec.runs:
        raise XlsptError(f"{spec.source} expands to no runs: give every key at least one value")
