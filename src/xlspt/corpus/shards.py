"""A corpus's input shards (Parquet, JSON Lines, CSV/TSV, plain text) read a chunk at a time, and the output
shards its labels go to, each moved into place only when complete.

Reading never holds a whole shard: Parquet is read a row-group batch at a time (``pyarrow``), JSON Lines and
CSV/TSV in chunks (``pandas``), plain text a line at a time.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import XlsptError
from .config import OutputFormat

#: The formats read, by file suffix.
SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "text"}
#: The columns a row of a plain text file has.
TEXT_FILE_COLUMN = "text"
#: Rows per chunk when a column is only scanned (counting rows, checking ids, languages or self-trained texts).
SCAN_ROWS = 65536
#: Where a shard's counts are kept once its output is complete (read by a rerun and the manifest).
DONE_FOLDER = ".done"


@dataclass(frozen=True)
class InputShard:
    """One input file: where it is, its name relative to the input's root (what the output shard is named after)."""

    path: Path
    name: str

    @property
    def kind(self) -> str:
        return SUFFIXES[self.path.suffix.lower()]

    def identity(self) -> dict:
        """What says the file is the one labelled before: its name, size and modification time."""
        stat = self.path.stat()
        return {"name": self.name, "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def find_shards(where: str) -> list[InputShard]:
    """The input files of ``--input``: one file, every readable file inside a folder (recursively), or a glob's
    matches; refused with one line when nothing matches or a named file has no format this reads."""
    formats = ", ".join(sorted(SUFFIXES))
    path = Path(where).expanduser()
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                             and not any(part.startswith(".") for part in p.relative_to(path).parts)), path
        if not files:
            raise XlsptError(f"--input {where}: the folder holds no file this reads ({formats})")
    else:
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(where), recursive=True) if Path(p).is_file())
        if not files:
            raise XlsptError(f"--input {where}: no file matches (give a file, a folder or a glob such as 'data/*.parquet')")
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files]))
    unknown = [p.name for p in files if p.suffix.lower() not in SUFFIXES]
    if unknown:
        raise XlsptError(f"--input: {unknown[0]} has no format this reads ({formats})")
    return [InputShard(p, p.resolve().relative_to(root.resolve()).as_posix()) for p in files]


def columns_of(shard: InputShard) -> list[str]:
    """The columns a shard has (refused with one line when it cannot be read)."""
    try:
        if shard.kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(shard.path).schema_arrow.names)
        if shard.kind == "text":
            with open(shard.path, encoding="utf-8") as handle:
                handle.readline()
            return [TEXT_FILE_COLUMN]
        if shard.kind == "jsonl":
            with open(shard.path, encoding="utf-8") as handle:
                first = next((line for line in handle if line.strip()), "{}")
            row = json.loads(first)
            if not isinstance(row, dict):
                raise ValueError("a line is not a JSON object")
            return list(row)
        return list(pd.read_csv(shard.path, sep="\t" if shard.kind == "tsv" else ",", nrows=0).columns)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise XlsptError(f"cannot read {shard.path} ({_reason(exc)}): fix or remove the file") from None


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def read_chunks(shard: InputShard, columns: Sequence[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """``columns`` of the shard's rows, ``chunk_rows`` at a time (texts as read: a missing or non-string text
    stays as it is, for the caller to count)."""
    columns = list(dict.fromkeys(columns))
    try:
        if shard.kind == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(shard.path).iter_batches(batch_size=chunk_rows, columns=columns):
                yield batch.to_pandas()
        elif shard.kind == "text":
            with open(shard.path, encoding="utf-8") as handle:
                lines: list[str] = []
                for line in handle:
                    lines.append(line.rstrip("\n").rstrip("\r"))
                    if len(lines) == chunk_rows:
                        yield pd.DataFrame({TEXT_FILE_COLUMN: lines})
                        lines = []
                if lines:
                    yield pd.DataFrame({TEXT_FILE_COLUMN: lines})
        elif shard.kind == "jsonl":
            with pd.read_json(shard.path, lines=True, chunksize=chunk_rows, dtype=False) as reader:
                for chunk in reader:
                    missing = [c for c in columns if c not in chunk]
                    if missing:
                        raise XlsptError(f"{shard.path}: rows without the column {missing[0]!r} (near row {chunk.index[0]})")
                    yield chunk[columns].reset_index(drop=True)
        else:
            sep = "\t" if shard.kind == "tsv" else ","
            with pd.read_csv(shard.path, sep=sep, usecols=columns, dtype=object, keep_default_na=False,
                             chunksize=chunk_rows) as reader:
                for chunk in reader:
                    yield chunk[columns].reset_index(drop=True)
    except XlsptError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise XlsptError(f"cannot read {shard.path} ({_reason(exc)}): fix or remove the file") from None


def count_rows(shard: InputShard, text_column: str) -> int:
    """How many rows the shard has (Parquet: from its footer; other formats: read once)."""
    if shard.kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(shard.path).metadata.num_rows
    if shard.kind == "text":
        with open(shard.path, "rb") as handle:
            data = handle.read()
        return data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))
    return sum(len(chunk) for chunk in read_chunks(shard, [text_column], SCAN_ROWS))


def check_unique_ids(shards: Sequence[InputShard], id_column: str) -> None:
    """Refuse a missing id or an id that two rows share, naming where (ids are hashed to 64 bits, and a shared
    hash is checked against the values themselves)."""
    hashes, where = [], []
    for k, shard in enumerate(shards):
        offset = 0
        for chunk in read_chunks(shard, [id_column], SCAN_ROWS):
            ids = chunk[id_column]
            if ids.isna().any():
                row = offset + int(np.flatnonzero(ids.isna().to_numpy())[0])
                raise XlsptError(f"{shard.name} row {row} has no {id_column!r}: give every row an id, or drop --id-column")
            hashes.append(pd.util.hash_array(ids.astype(str).to_numpy(dtype=object)))
            where.append(np.stack([np.full(len(ids), k), np.arange(offset, offset + len(ids))], axis=1))
            offset += len(ids)
    if not hashes:
        return
    values, at = np.concatenate(hashes), np.concatenate(where)
    order = np.argsort(values, kind="stable")
    shared = np.flatnonzero(values[order][1:] == values[order][:-1])
    for i in shared:
        (k1, r1), (k2, r2) = at[order[i]], at[order[i + 1]]
        first, second = _id_at(shards[k1], id_column, r1), _id_at(shards[k2], id_column, r2)
        if str(first) == str(second):
            raise XlsptError(f"--id-column {id_column}: id {first!r} is in {shards[k1].name} row {r1} and "
                             f"{shards[k2].name} row {r2}: ids must be unique (or drop --id-column)")


def _id_at(shard: InputShard, id_column: str, row: int):
    offset = 0
    for chunk in read_chunks(shard, [id_column], SCAN_ROWS):
        if row < offset + len(chunk):
            return chunk[id_column].iloc[row - offset]
        offset += len(chunk)
    raise IndexError(row)


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class OutputShard:
    """Where one input shard's labels go: the output file and the record of its counts."""

    path: Path
    done: Path

    @classmethod
    def of(cls, root: Path, shard: InputShard, fmt: OutputFormat, names: Sequence[str]) -> "OutputShard":
        """``root/<input name with the format's suffix>``; the input's suffix is kept where two inputs would
        share an output name (``a.csv`` and ``a.jsonl``)."""
        stem = str(Path(shard.name).with_suffix(""))
        if sum(str(Path(n).with_suffix("")) == stem for n in names) > 1:
            stem = shard.name
        return cls(root / (stem + fmt.suffix), root / DONE_FOLDER / (stem + fmt.suffix + ".json"))

    def is_complete(self) -> bool:
        return self.path.is_file() and self.done.is_file()

    def counts(self) -> dict:
        return json.loads(self.done.read_text(encoding="utf-8"))

    def temporary(self) -> Path:
        """A file of its own next to the output (two attempts at one shard never write the same file)."""
        return self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")


class ShardWriter:
    """Writes one output shard a chunk at a time into a temporary file; :meth:`commit` records its counts and
    then moves the file into place (a rerun takes a shard as done only when both are there)."""

    def __init__(self, out: OutputShard, fmt: OutputFormat, types: dict | None = None):
        self.out, self.fmt, self.types = out, fmt, types or {}
        self.tmp = out.temporary()
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.writer = None
        self.schema = None
        self.handle = None if fmt is OutputFormat.PARQUET else open(self.tmp, "w", encoding="utf-8")

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt is OutputFormat.JSONL:
            if len(frame):
                text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=7)
                self.handle.write(text if text.endswith("\n") else text + "\n")  # pandas < 2 ends without one
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.schema = _known_types(table.schema, self.types)
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.writer.write_table(table.cast(self.schema))

    def commit(self, counts: dict) -> None:
        self.close()
        if self.fmt is OutputFormat.PARQUET and self.writer is None:  # a shard without rows still gets its file
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.schema([pa.field(n, t) for n, t in self.types.items()]).empty_table(), self.tmp)
        from ..files import write_json_atomic

        write_json_atomic(self.out.done, counts)
        os.replace(self.tmp, self.out.path)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.writer is not None:
            self.writer.close()

    def discard(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)


def _known_types(schema, types: dict):
    """The first chunk's schema with the types given for some columns, and a column that held only nulls typed
    as a string (later chunks are cast to it)."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, types.get(f.name) or (pa.string() if pa.types.is_null(f.type) else f.type))
                      for f in schema])


def remove_temporaries(root: Path) -> None:
    """Temporary files that attempts killed midway left in ``root``."""
    for path in root.rglob(".*.tmp"):
        path.unlink(missing_ok=True)
