"""Move a result store's runs to ids that name the data by its content (the checksum of the rows a run read)
instead of the data folder's absolute path, as the first stores did; then rebuild the report with refresh.py.

    python results/rekey.py [STORE]     (default: the published store, results/gemma-3-270m)

Idempotent and kill-safe: a store already keyed by content is left as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xlspt.study.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    store = ResultStore(argv[0] if argv else ROOT / "results" / "gemma-3-270m", create=False)
    moved = store.rekey_by_content()
    for old, new in moved:
        print(f"runs/{old} -> runs/{new}")
    print(f"{len(moved)} runs moved to ids by content in {store.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
