"""Reading a data file's rows into a task's form: the files a folder holds, its columns checked, labels as text,
the line a bad row came from, and seeded stratified splits for data that brings none."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import XlsptError, first_line

EXTENSIONS = (".tsv", ".csv", ".jsonl")


def data_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")]


def require_columns(frame: pd.DataFrame, columns, where: str, option: str | None) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        # a quoted header may hold a line break or a tab: such a name is shown escaped, so the error stays one line
        shown = ", ".join(str(c) if str(c).isprintable() else repr(c) for c in frame.columns if c != "_row")
        fix = option or ("--text-column" if missing[0] == columns[0] else "--label-column")
        raise XlsptError(f"{where} lacks the column {missing[0]!r} (it has: {shown}): pass {fix} NAME")


def as_label(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def row_number(frame: pd.DataFrame, mask: pd.Series) -> int:
    """The offending row's line in its file (1-based; CSV and TSV have a header line first)."""
    return int(frame.loc[mask, "_line"].iloc[0])


def stratified_split(frame: pd.DataFrame, shares: dict[str, float], seed: int, where: str) -> dict[str, pd.DataFrame]:
    """Split ``frame`` into the named parts (``{"train": 0.7, "dev": 0.1, "test": 0.2}``), label by label, seeded.

    Every label keeps at least one row in every part; the first part takes the rest.
    """
    names = list(shares)
    total = sum(shares.values())
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    for label, rows in frame.groupby("label", sort=True):
        rows = rows.sample(frac=1.0, random_state=seed)
        if len(rows) < len(names):
            raise XlsptError(f"{where}: the label {label!r} has {len(rows)} row(s), too few to split into "
                             f"{', '.join(names)}: add rows, or give split files or a split column")
        sizes = {name: max(1, round(len(rows) * shares[name] / total)) for name in names[1:]}
        sizes[names[0]] = len(rows) - sum(sizes.values())
        while sizes[names[0]] < 1:  # tiny classes: take back from the largest other part
            largest = max(names[1:], key=sizes.get)
            sizes[largest] -= 1
            sizes[names[0]] += 1
        start = 0
        for name in names:
            parts[name].append(rows.iloc[start : start + sizes[name]])
            start += sizes[name]
    return {name: pd.concat(p).sort_values("index_id").reset_index(drop=True) for name, p in parts.items()}


def read_table(path: Path, text_column: str, label_column: str) -> pd.DataFrame:
    """A CSV, TSV or JSON Lines file as it is (every value as text, ``_row`` numbering its rows), or one line
    naming what is wrong with it."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise XlsptError(f"{path} is empty: it needs a header ({text_column}, {label_column}) and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        kind = {".jsonl": "JSON Lines file", ".csv": "CSV file"}.get(suffix, "TSV file")
        raise XlsptError(f"{path} is not a valid {kind} ({first_line(exc)[:160]}): fix the file (UTF-8, with a header)") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame["_row"] = range(len(frame))
    frame.attrs["_header_lines"] = 0 if suffix == ".jsonl" else 1
    return frame
