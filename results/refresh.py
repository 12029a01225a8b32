"""Rebuild the published study report from the committed run records, and refresh every table that
README.md and benchmarks/README.md quote from it (``<!-- report.md: ... -->`` blocks).

    python results/refresh.py

``tests/test_published.py`` fails, naming the figure, whenever the report or a quote is stale.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from xlspt.report.quotes import refresh_quotes
from xlspt.report.study import write_report

ROOT = Path(__file__).resolve().parents[1]
STORE = Path("results/gemma-3-270m")  # relative: report.md names the store as given
DOCUMENTS = ("README.md", "benchmarks/README.md")


def main() -> int:
    os.chdir(ROOT)
    out = STORE / "report"
    for old in [*out.glob("*.png"), *out.glob("*.csv"), *out.glob("report.md")]:
        old.unlink()  # a figure the store no longer has the arms for must not linger
    report = write_report(STORE, out)
    problems = [problem for document in DOCUMENTS for problem in refresh_quotes(document, out / "report.md")]
    print(f"report of {report['runs']} runs in {out}; " + ("; ".join(problems) if problems else "every quote refreshed"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
