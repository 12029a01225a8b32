"""The study's published results: the committed store, its report, and the figures the READMEs quote.

``results/gemma-3-270m`` holds the run records of the ``gemma``, ``gemma-shots`` and ``gemma-lora`` presets on the
embedded model, and ``results/gemma-3-270m/report`` the report written from them. These tests
rebuild the report from the records (nothing is trained) and check that the committed report and
every table README.md, benchmarks/README.md and docs/cli.md quote from it (the study's figures and the
published anchors beside them) are current.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from xlspt.report.quotes import parse_table, quotes_in, stale_quotes
from xlspt.report.study import write_report
from xlspt.study.spec import load_spec, preset_path

ROOT = Path(__file__).resolve().parents[1]
STORE = Path("results/gemma-3-270m")  # relative, as the report names it in report.md
PUBLISHED = STORE / "report"
REFRESH = "python results/refresh.py"
DOCUMENTS = ("README.md", "benchmarks/README.md", "docs/cli.md")


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
    first, checksum = records[0]["config"], records[0]["data_checksum"]
    assert all(r["config"]["data"] == "sha256:" + checksum == "sha256:" + r["data_checksum"] for r in records), \
        "the records read different data, or name it otherwise than by its checksum"
    presets = [load_spec(preset_path(name)) for name in ("gemma", "gemma-shots", "gemma-lora")]
    expected = {run.run_id(dtype=first["dtype"], languages=first["langs"], data_checksum=checksum)
                for spec in presets for run in spec.runs}
    for record in records:
        assert record["run_id"] in expected, f"{record['run_id']} is not a run of the gemma, gemma-shots or gemma-lora preset"
        assert record["status"] == "done", f"{record['run_id']}: {record['status']}"
        assert len(record["results"]) == 52
    if (ROOT / ".git").exists():  # what the repository keeps of the store: records only, no prompts or weights
        tracked = subprocess.run(["git", "ls-files", str(STORE / "runs")], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
        assert tracked and all(Path(p).name == "record.json" for p in tracked), [p for p in tracked if "record.json" not in p]


def test_no_committed_result_holds_a_machine_path():
    """Results are keyed by what the data is: no file under results/ names a folder of the machine it was made on."""
    pattern = re.compile(r"(?<![\w.])(/(home|root|work|srv|tmp|Users|mnt|opt|data|var)/|[A-Za-z]:\\\\|~/)")
    files = [p for p in (ROOT / "results").rglob("*") if p.is_file() and p.suffix in (".json", ".md", ".csv", ".py", ".txt")]
    assert files
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files for m in [pattern.search(p.read_text(encoding="utf-8"))] if m]
    assert not found, found


def test_the_published_store_resumes_with_the_data_in_another_folder(full_sib200_dir, tmp_path, capsys):
    """Copied to a folder of another name, SIB-200 finds every published run done (48/48, 32/32 and 8/8); data with other
    content finds none, and ``--status`` says why in one line."""
    from xlspt.cli import main

    from xlspt.study.sweep import sweep_from

    copy = tmp_path / "a" / "copy-of-the-data"
    for folder in full_sib200_dir.iterdir():
        if folder.is_dir():
            shutil.copytree(folder, copy / folder.name)
    for preset, total in (("gemma", 48), ("gemma-shots", 32), ("gemma-lora", 8)):
        status = sweep_from(None, preset, str(ROOT / STORE), {"data": str(copy)}, status_only=True)
        assert status.as_json() == {"total": total, "done": total, "failed": 0, "running": 0, "pending": 0}, status.table()
        assert not status.notes
    test = copy / "fra_Latn" / "test.tsv"
    test.write_text(test.read_text(encoding="utf-8").replace("politics", "sports", 1), encoding="utf-8")  # one label
    assert main(["sweep", "--preset", "gemma", "--store", str(ROOT / STORE), "--data", str(copy), "--status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "48 total, 0 done, 0 failed, 0 running, 48 pending"
    assert out[-1].startswith("note: 48 of the pending runs are in the store with every setting alike but the data")


def test_committed_report_is_the_report_of_the_committed_records(rebuilt):
    published = ROOT / PUBLISHED
    assert (published / "report.md").read_text(encoding="utf-8") == (rebuilt / "report.md").read_text(encoding="utf-8"), \
        f"{PUBLISHED}/report.md is stale: run `{REFRESH}`"
    kept = {p.name for p in published.glob("*.csv")}
    assert {"summary.csv", "languages.csv", "findings.csv", "correlations.csv", "anchors.csv"} <= kept
    for table in sorted(t for t in rebuilt.glob("*.csv") if t.name in kept):  # runs.csv repeats the records: not kept
        pd.testing.assert_frame_equal(pd.read_csv(published / table.name), pd.read_csv(table), check_exact=False,
                                      rtol=1e-9, obj=f"{PUBLISHED}/{table.name} (stale? run `{REFRESH}`)")
    assert sorted(p.name for p in published.glob("*.png")) == sorted(p.name for p in rebuilt.glob("*.png"))


@pytest.mark.parametrize("document", DOCUMENTS)
def test_quoted_figures_equal_the_report(rebuilt, document):
    problems = stale_quotes(ROOT / document, rebuilt / "report.md")
    assert not problems, "stale quoted figures (refresh them from the report):\n" + "\n".join(problems)


def test_readme_quotes_the_findings_and_the_anchors():
    sections = {quote.section for quote in quotes_in((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert {"Findings of the study", "Against published anchors", "Published anchors per language set",
            "Each language beside the published anchors"} <= sections


def _number(cell: str) -> float:
    return float(re.match(r"[+-]?[0-9.]+", cell.strip().removeprefix("**")).group(0))


def test_the_presets_beside_the_anchors_are_the_benchmarks_figures():
    """The README's headline rows that are not the report's (the presets) repeat benchmarks/README.md: `quality` and
    `quality-unlabeled` its second round (the development languages' picks), `quality-lora` its run of the preset;
    their differences from the anchors are those of the printed figures."""
    [headline] = [q for q in quotes_in((ROOT / "README.md").read_text(encoding="utf-8")) if q.section == "Against published anchors"]
    rows = headline.table.keyed(headline.key)
    benchmarks = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8").splitlines()

    def table(header: str) -> list[dict]:
        found = parse_table(benchmarks[next(i for i, line in enumerate(benchmarks) if line.startswith(header)):])
        return [dict(zip(found.columns, r)) for r in found.rows]

    picks = {row["protocol"][0]: row for row in table("| setting | chosen on |") if row["chosen on"] == "development languages"}
    [lora] = [row for row in table("| preset run |") if row["preset run"] == "`quality-lora`"]
    figures = {"quality": picks["a"], "quality-lora": lora, "quality-unlabeled": picks["b"]}
    assert [re.match(r"`--preset ([a-z-]+)`", name).group(1) for name in headline.others] == list(figures)
    for name, pick in zip(headline.others, figures.values()):
        row = rows[(name,)]
        assert _number(row["accuracy"]) == _number(pick["52-language mean (± s.e.)"]), name
        assert _number(row["English"]) == _number(pick["English"]), name
        for anchor in ("GPT-4", "XLM-R"):
            assert round(_number(row["accuracy"]) - _number(row[anchor]), 1) == _number(row[f"vs {anchor}"]), (name, anchor)
            assert row[f"languages above {anchor}"] == pick.get(f"above {anchor}", "–"), (name, anchor)


def test_rekey_moves_a_store_keyed_by_folder_to_the_published_ids(tmp_path):
    """results/rekey.py's migration: records keyed by the data folder's path come out under the published ids, the
    run folder moved whole; a second pass, or a pass after a kill between rewriting and renaming, finishes the job."""
    from xlspt.files import write_json_atomic
    from xlspt.study.config import canonical_run_id
    from xlspt.study.store import ResultStore

    published = _records()[:3]
    store = ResultStore(tmp_path / "store")
    for record in published:
        old = {**record, "config": {**record["config"], "data": "/srv/sib200"}}
        old["run_id"] = canonical_run_id(old["config"])
        old["prompt_file"] = old["run_id"] + "/prompt.safetensors"
        write_json_atomic(store.run_dir(old["run_id"]) / "record.json", old)
        (store.run_dir(old["run_id"]) / "prompt.safetensors").write_bytes(b"prompt")
    half = store.run_dir(canonical_run_id({**published[0]["config"], "data": "/srv/sib200"}))
    interrupted = {**published[0], "prompt_file": published[0]["run_id"] + "/prompt.safetensors"}
    write_json_atomic(half / "record.json", interrupted)  # killed after rewriting the record, before renaming
    moved = store.rekey_by_content()
    assert sorted(new for _, new in moved) == sorted(r["run_id"] for r in published)
    for record in published:
        folder = store.run_dir(record["run_id"])
        kept = json.loads((folder / "record.json").read_text())
        assert kept["config"] == record["config"] and kept["prompt_file"] == record["run_id"] + "/prompt.safetensors"
        assert (folder / "prompt.safetensors").read_bytes() == b"prompt"
    assert store.rekey_by_content() == [] and len(list(store.root.glob("runs/*"))) == 3
