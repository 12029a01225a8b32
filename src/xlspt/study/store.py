"""The result store: one folder per run, safe against kills and readable while a sweep writes.

Layout::

    <store>/runs/<run_id>/prompt.safetensors, prompt.json, results.csv, summary.*   (run files)
    <store>/runs/<run_id>/record.json    written last and atomically: the run is finished
    <store>/runs/<run_id>/.lock          locked (flock) by the process running it

A run is *done* or *failed* when its ``record.json`` says so; *running* while a live process
holds its lock; *pending* otherwise. The operating system drops a dead process's locks, so a
run whose process was killed (even with ``kill -9``) is pending again, and files it left
behind are overwritten whole by the next attempt. A run is claimed under its lock and its
record re-checked, so two workers never run (or store) the same run twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import XlsptError
from ..files import write_json_atomic
from ..layout import LOCK_FILE, RECORD_FILE
from .records import RunRecord, RunStatus


@dataclass
class StoreContents:
    """Every run folder of a store, sorted by what its record says."""

    root: Path
    done: list[RunRecord] = field(default_factory=list)
    failed: list[RunRecord] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # run ids without a finished record (pending or running)
    unreadable: list[str] = field(default_factory=list)  # "runs/<run_id>/record.json: <why>" per unparsable record


class ResultStore:
    """Run folders keyed by run id under ``root``."""

    def __init__(self, root: str | Path, *, create: bool = True):
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise XlsptError(f"--store {self.root} is a file: pass a directory")
        if create:  # a store that does not exist yet reads as empty (a sweep's status before it starts)
            (self.root / "runs").mkdir(parents=True, exist_ok=True)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def exists(self) -> bool:
        """Whether the store has its ``runs/`` folder (opening a store to write makes it)."""
        return (self.root / "runs").is_dir()

    def read_record(self, run_id: str) -> RunRecord:
        """The run's record; raises OSError, ValueError or TypeError when it is missing or cannot be parsed."""
        path = self.run_dir(run_id) / RECORD_FILE
        return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def record(self, run_id: str) -> RunRecord | None:
        """The finished run's record, or ``None`` (a record that cannot be read counts as missing)."""
        try:
            return self.read_record(run_id)
        except (OSError, ValueError, TypeError):
            return None

    def records(self) -> list[RunRecord]:
        """Every finished (done or failed) run's record."""
        runs = self.root / "runs"
        out = []
        for directory in sorted(runs.iterdir()) if runs.is_dir() else []:
            record = self.record(directory.name)
            if record is not None:
                out.append(record)
        return out

    def contents(self) -> StoreContents:
        """Every run folder, by what its record says; unlike :meth:`records`, it also names the runs
        without a finished record and the records that cannot be parsed (with the parser's error)."""
        contents = StoreContents(root=self.root)
        runs = self.root / "runs"
        for directory in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []:
            path = directory / RECORD_FILE
            if not path.is_file():
                contents.unfinished.append(directory.name)  # the record is written last: the run has not finished
                continue
            try:
                record = self.read_record(directory.name)
            except (OSError, ValueError, TypeError) as error:
                contents.unreadable.append(f"{path.relative_to(self.root)}: {error}")
                continue
            if record.status == RunStatus.DONE.value:
                contents.done.append(record)
            elif record.status == RunStatus.FAILED.value:
                contents.failed.append(record)
            else:
                contents.unfinished.append(directory.name)
        return contents

    def rekey_by_content(self) -> list[tuple[str, str]]:
        """Move runs whose ids hashed the data folder's path (the first stores) to ids that name the data by the
        checksum their records hold; returns the ``(old, new)`` id pairs moved (none for a current store).

        Each run's record is rewritten in place first (atomically: new id, data by checksum), then its folder renamed,
        so a kill at any point leaves a store that running this again finishes.
        """
        from .config import DATA_CHECKSUM_PREFIX, canonical_run_id

        moved = []
        runs = self.root / "runs"
        for folder in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []:
            record = self.record(folder.name)
            if record is None:
                continue
            data = record.config.get("data")
            if record.data_checksum and not (isinstance(data, str) and data.startswith(DATA_CHECKSUM_PREFIX)):
                record.config = {**record.config, "data": DATA_CHECKSUM_PREFIX + record.data_checksum}
                new = canonical_run_id(record.config)
                for name in ("prompt_file", "model_file"):
                    value = getattr(record, name)
                    if value and value.startswith(folder.name + "/"):
                        setattr(record, name, new + value[len(folder.name):])
                record.run_id = new
                write_json_atomic(folder / RECORD_FILE, record.to_dict())
            if folder.name != record.run_id:  # rewritten now, or by a run of this that was killed before renaming
                if self.run_dir(record.run_id).exists():
                    raise XlsptError(f"{self.root}: runs/{folder.name} and runs/{record.run_id} are the same run "
                                     f"(the same data read from two folders): keep one and run this again")
                os.rename(folder, self.run_dir(record.run_id))
                moved.append((folder.name, record.run_id))
        return moved

    def write_record(self, record: RunRecord) -> None:
        write_json_atomic(self.run_dir(record.run_id) / RECORD_FILE, record.to_dict())

    def discard_record(self, run_id: str) -> None:
        (self.run_dir(run_id) / RECORD_FILE).unlink(missing_ok=True)

    def is_running(self, run_id: str) -> bool:
        """Whether a live process holds the run's lock (probed with a shared lock, released at once)."""
        path = self.run_dir(run_id) / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def status(self, run_id: str) -> RunStatus:
        record = self.record(run_id)
        if record is not None:
            return RunStatus(record.status)
        return RunStatus.RUNNING if self.is_running(run_id) else RunStatus.PENDING

    def statuses(self, run_ids: Iterable[str]) -> dict[str, RunStatus]:
        return {run_id: self.status(run_id) for run_id in run_ids}

    @contextlib.contextmanager
    def claim(self, run_ids: Iterable[str], *, retry_failed: bool = False) -> Iterator[list[str]]:
        """Lock the given runs that are still to do; yields the ids this process now owns.

        Runs that are done, running elsewhere, or failed (unless ``retry_failed``) are left out.
        The locks are held until the block ends (or the process dies).
        """
        held: list[tuple[str, int]] = []
        try:
            for run_id in run_ids:
                directory = self.run_dir(run_id)
                directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
                if not _lock_exclusive(fd):
                    os.close(fd)
                    continue
                record = self.record(run_id)  # finished while we waited for the lock?
                if record is not None and (record.status == RunStatus.DONE.value or not retry_failed):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    continue
                if record is not None:
                    self.discard_record(run_id)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {os.uname().nodename} {time.time():.0f}\n".encode())
                held.append((run_id, fd))
            yield [run_id for run_id, _ in held]
        finally:
            for _, fd in held:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)


def _lock_exclusive(fd: int, attempts: int = 5) -> bool:
    """An exclusive lock, retried briefly: a status reader holds a shared lock for microseconds."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.02 * (attempt + 1))
    return False
