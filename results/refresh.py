"""Rebuild the published study report from the committed run records, and refresh every table that
README.md, benchmarks/README.md and docs/cli.md quote from it (``<!-- report.md: ... -->`` blocks).

    python results/refresh.py

``tests/test_published.py`` fails, naming the figure, whenever the report or a quote is stale.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from xlspt.report.quotes import refresh_quotes
from xlspt.report.study import write_report

ROOT = Path(__file__).resolve().parents[1]
STORE = Path("results/gemma-3-270m")  # relative: report.md names the store as given
DOCUMENTS = ("README.md", "benchmarks/README.md", "docs/cli.md")


def records_only(root: Path) -> None:
    """Copy of the store's records (what git keeps of it) under ``root``, at the same relative path: the report
    must not count the run folders that a sweep running here has claimed but not finished."""
    for record in (ROOT / STORE / "runs").glob("*/record.json"):
        target = root / STORE / "runs" / record.parent.name / record.name
        target.parent.mkdir(parents=True)
        shutil.copy2(record, target)


def main() -> int:
    out = ROOT / STORE / "report"
    for old in [*out.glob("*.png"), *out.glob("*.csv"), *out.glob("report.md")]:
        old.unlink()  # a figure the store no longer has the arms for must not linger
    with tempfile.TemporaryDirectory() as scratch:
        records_only(Path(scratch))
        os.chdir(scratch)
        report = write_report(STORE, out)
    os.chdir(ROOT)
    problems = [problem for document in DOCUMENTS for problem in refresh_quotes(document, out / "report.md")]
    print(f"report of {report['runs']} runs in {out}; " + ("; ".join(problems) if problems else "every quote refreshed"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
