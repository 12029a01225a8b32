"""The study's published results: the committed store, its report, and the figures the READMEs quote.

``results/gemma-3-270m`` holds the run records of the ``gemma`` and ``gemma-shots`` presets on the
embedded model, and ``results/gemma-3-270m/report`` the report written from them. These tests
rebuild the report from the records (nothing is trained) and check that the committed report and
every table README.md and benchmarks/README.md quote from it are current.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from xlspt.report.quotes import stale_quotes
from xlspt.report.study import write_report
from xlspt.study.spec import load_spec, preset_path

ROOT = Path(__file__).resolve().parents[1]
STORE = Path("results/gemma-3-270m")  # relative, as the report names it in report.md
PUBLISHED = STORE / "report"
REFRESH = "python results/refresh.py"
DOCUMENTS = ("README.md", "benchmarks/README.md")


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> Path:
    """The report written now from the store's records, as results/refresh.py writes it."""
    loader = importlib.util.spec_from_file_location("refresh", ROOT / "results" / "refresh.py")
    refresh = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(refresh)
    out, scratch = tmp_path_factory.mktemp("report"), tmp_path_factory.mktemp("records")
    refresh.records_only(scratch)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(scratch)
        write_report(STORE, out)
    return out


def _records() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / STORE / "runs").glob("*/record.json"))]


def test_store_holds_only_finished_runs_of_its_specs():
    records = _records()
    assert records, f"no records in {STORE}"
    first = records[0]["config"]
    assert all(r["config"]["data"] == first["data"] for r in records), "the records read different data folders"
    presets = [load_spec(preset_path(name), {"data": first["data"]}) for name in ("gemma", "gemma-shots")]
    expected = {run.run_id(dtype=first["dtype"], languages=first["langs"]) for spec in presets for run in spec.runs}
    for record in records:
        assert record["run_id"] in expected, f"{record['run_id']} is not a run of the gemma or gemma-shots preset"
        assert record["status"] == "done", f"{record['run_id']}: {record['status']}"
        assert len(record["results"]) == 52
    if (ROOT / ".git").exists():  # what the repository keeps of the store: records only, no prompts or weights
        tracked = subprocess.run(["git", "ls-files", str(STORE / "runs")], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
        assert tracked and all(Path(p).name == "record.json" for p in tracked), [p for p in tracked if "record.json" not in p]


def test_committed_report_is_the_report_of_the_committed_records(rebuilt):
    published = ROOT / PUBLISHED
    assert (published / "report.md").read_text(encoding="utf-8") == (rebuilt / "report.md").read_text(encoding="utf-8"), \
        f"{PUBLISHED}/report.md is stale: run `{REFRESH}`"
    kept = {p.name for p in published.glob("*.csv")}
    assert {"summary.csv", "languages.csv", "findings.csv", "correlations.csv"} <= kept
    for table in sorted(t for t in rebuilt.glob("*.csv") if t.name in kept):  # runs.csv repeats the records: not kept
        pd.testing.assert_frame_equal(pd.read_csv(published / table.name), pd.read_csv(table), check_exact=False,
                                      rtol=1e-9, obj=f"{PUBLISHED}/{table.name} (stale? run `{REFRESH}`)")
    assert sorted(p.name for p in published.glob("*.png")) == sorted(p.name for p in rebuilt.glob("*.png"))


@pytest.mark.parametrize("document", DOCUMENTS)
def test_quoted_figures_equal_the_report(rebuilt, document):
    problems = stale_quotes(ROOT / document, rebuilt / "report.md")
    assert not problems, "stale quoted figures (refresh them from the report):\n" + "\n".join(problems)


def test_readme_quotes_the_findings_and_configurations():
    from xlspt.report.quotes import quotes_in

    sections = {quote.section for quote in quotes_in((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert {"Findings of the study", "Accuracy per configuration"} <= sections
