"""Tables quoted from a report, checked against it.

A Markdown document (README.md, benchmarks/README.md) quotes a table of ``report.md`` between two
comments, naming the report's section and the columns that identify a row::

    <!-- report.md: Findings of the study; key: finding, model -->
    | finding | model | verdict | effect |
    |---|---|---|---|
    | freezing the model helps transfer | gemma-3-270m | contradicted | -7.7 points (MF - no MF) |
    <!-- /report.md -->

The quote may keep any of the report table's columns, in any order, and any of its rows. Every
quoted cell must equal the report's cell as printed (so figures agree to the printed precision).
A table that sets the report's rows beside figures measured elsewhere names those rows (their key,
comma-separated) after ``not in the report:``; they are left unchecked, and a listed row that the
quote lacks is reported::

    <!-- report.md: Against published anchors; key: configuration; not in the report: `--preset quality` -->
:func:`stale_quotes` lists every quoted cell, row or column that the report no longer has, each
as one line naming the document, the quote and what differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..files import write_text_atomic

_OPEN = re.compile(r"<!--\s*report\.md:\s*(?P<section>[^;>]+?)\s*;\s*key:\s*(?P<key>[^;>]+?)\s*"
                   r"(?:;\s*not in the report:\s*(?P<others>[^>]+?)\s*)?-->")
_CLOSE = "<!-- /report.md -->"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class Table:
    """A Markdown table: column names and rows of cell texts."""

    columns: list[str]
    rows: list[list[str]]

    def keyed(self, key: list[str]) -> dict[tuple[str, ...], dict[str, str]]:
        positions = [self.columns.index(k) for k in key]
        return {tuple(row[i] for i in positions): dict(zip(self.columns, row)) for row in self.rows}


@dataclass(frozen=True)
class Quote:
    """One quoted table: the report section it comes from, its key columns, the table, the lines it spans
    in the document (0-based, end exclusive, the comments left out), and the keys of its rows that come
    from elsewhere (``" / "``-joined for several key columns)."""

    section: str
    key: list[str]
    table: Table
    start: int
    end: int
    closed: bool = True
    others: tuple[str, ...] = ()

    @property
    def line(self) -> int:
        """The 1-based line of the opening comment."""
        return self.start


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in _CELL_SPLIT.split(inner)]


def parse_table(lines: list[str]) -> Table | None:
    """The first Markdown table in ``lines`` (header, rule, rows), or None."""
    rows = [line for line in lines if line.lstrip().startswith("|")]
    if len(rows) < 2:
        return None
    start = lines.index(rows[0])
    block = []
    for line in lines[start:]:
        if not line.lstrip().startswith("|"):
            break
        block.append(_cells(line))
    width = len(block[0])  # a row with a missing or extra cell is read as the header's width
    return Table(columns=block[0], rows=[(row + [""] * width)[:width] for row in block[2:]])


def report_tables(report: str) -> dict[str, Table]:
    """The table of each ``## `` section of a report, by its heading."""
    tables = {}
    sections = re.split(r"^## ", report, flags=re.MULTILINE)[1:]
    for section in sections:
        heading, _, body = section.partition("\n")
        table = parse_table(body.splitlines())
        if table is not None:
            tables[heading.strip()] = table
    return tables


def quotes_in(document: str) -> list[Quote]:
    """The quoted tables of a document, in order."""
    lines = document.splitlines()
    quotes = []
    for number, line in enumerate(lines):
        match = _OPEN.search(line)
        if not match:
            continue
        end = next((i for i in range(number + 1, len(lines)) if lines[i].strip() == _CLOSE), None)
        table = parse_table(lines[number + 1:end]) if end is not None else None
        key = [k.strip() for k in match.group("key").split(",")]
        others = tuple(o.strip() for o in (match.group("others") or "").split(",") if o.strip())
        quotes.append(Quote(section=match.group("section"), key=key, table=table or Table(columns=[], rows=[]),
                            start=number + 1, end=end if end is not None else number + 1, closed=end is not None,
                            others=others))
    return quotes


def _section(tables: dict[str, Table], name: str) -> Table | None:
    return next((table for heading, table in tables.items() if heading.startswith(name)), None)


def _quote_problems(quote: Quote, report: Table, where: str) -> list[str]:
    if not quote.closed:
        return [f"{where}: no closing {_CLOSE} after the quoted table"]
    if any(k not in report.columns for k in quote.key):
        return [f"{where}: the report's table has no key column {', '.join(k for k in quote.key if k not in report.columns)}"]
    missing = [c for c in quote.table.columns if c not in report.columns]
    if missing or not quote.table.rows:
        return [f"{where}: the report's table has no column {', '.join(missing)}" if missing else f"{where}: quotes no row"]
    if any(k not in quote.table.columns for k in quote.key):
        return [f"{where}: the key columns {', '.join(quote.key)} are not all quoted"]
    problems = []
    current = report.keyed(quote.key)
    quoted = quote.table.keyed(quote.key)
    for name in quote.others:
        if name not in {" / ".join(key) for key in quoted}:
            problems.append(f"{where}: names {name!r} as a row not in the report, and quotes no such row")
    for key, row in quoted.items():
        name = " / ".join(key)
        if key not in current and name in quote.others:
            continue  # measured elsewhere, as the quote says
        if key not in current:
            problems.append(f"{where}, row {name!r}: the report has no such row")
            continue
        for column, quoted in row.items():
            if current[key][column] != quoted:
                problems.append(f"{where}, row {name!r}, column {column!r}: quotes {quoted!r}, "
                                f"the report gives {current[key][column]!r}")
    return problems


def _shown(document: Path) -> str:
    """The document's path as a reader finds it: relative to the working directory when under it."""
    try:
        return str(document.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(document)


def stale_quotes(document: str | Path, report: str | Path) -> list[str]:
    """Every quoted figure of ``document`` that differs from ``report`` (a ``report.md``), one line each;
    empty when all agree."""
    document, report = Path(document), Path(report)
    tables = report_tables(report.read_text(encoding="utf-8"))
    problems = []
    for quote in quotes_in(document.read_text(encoding="utf-8")):
        where = f"{_shown(document)} line {quote.line} ({quote.section})"
        table = _section(tables, quote.section)
        if table is None:
            problems.append(f"{where}: the report has no section {quote.section!r}")
        else:
            problems += _quote_problems(quote, table, where)
    return problems


def _render(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def refresh_quotes(document: str | Path, report: str | Path) -> list[str]:
    """Rewrite every quoted cell of ``document`` with the report's; returns what could not be refreshed
    (a missing section, row or column), as :func:`stale_quotes` words it."""
    document, report = Path(document), Path(report)
    tables = report_tables(report.read_text(encoding="utf-8"))
    lines = document.read_text(encoding="utf-8").splitlines()
    problems = []
    for quote in reversed(quotes_in("\n".join(lines))):  # from the end, so that earlier line numbers hold
        table = _section(tables, quote.section)
        where = f"{_shown(document)} line {quote.line} ({quote.section})"
        if table is None:
            problems.append(f"{where}: the report has no section {quote.section!r}")
            continue
        structural = [p for p in _quote_problems(quote, table, where) if not p.startswith(f"{where}, row ")]
        if structural:  # nothing to match rows by: the quote is left as it is
            problems += structural
            continue
        current = table.keyed(quote.key)
        rows = []
        for key, row in quote.table.keyed(quote.key).items():
            if key not in current or any(c not in current[key] for c in quote.table.columns):
                single = Quote(quote.section, quote.key, Table(quote.table.columns, [list(row.values())]), quote.start,
                               quote.end, others=tuple(o for o in quote.others if o == " / ".join(key)))
                problems += _quote_problems(single, table, where)
                rows.append(list(row.values()))
            else:
                rows.append([current[key][c] for c in quote.table.columns])
        lines[quote.start:quote.end] = _render(quote.table.columns, rows)
    write_text_atomic(document, "\n".join(lines) + "\n")
    return problems
