"""The study report (``xlspt.report.study.write_report``) on synthetic result stores.

The stores are written record by record, as a study would, for a small grid (2 freeze arms x
3 prompt lengths x reparameterization 0/200 x 2 seeds x 8 languages) whose accuracies are built
so that each finding's direction is known: freezing adds 3-9 points to every transfer language,
every step to a shorter prompt adds 1.5-4.5 points, and reparameterization adds 4 points to three
transfer languages and takes 4 from the other four. Tests reverse or change one effect at a time.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlspt.data.anchors import GPT4, XLMR, anchor_accuracy, anchor_mean
from xlspt.errors import XlsptError
from xlspt.report.anchors import role, shown_configurations
from xlspt.report.distance import typological_distance, typological_vector
from xlspt.report.figure_data import sweep_table
from xlspt.report.findings import CONTRADICTED, NOT_ENOUGH_RUNS, NOT_SUPPORTED, SUPPORTED, freezing_distance_table
from xlspt.report.figures import sweep_plot
from xlspt.report.grid import build_grid, read_store
from xlspt.report.quotes import refresh_quotes, stale_quotes
from xlspt.report.study import write_report
from xlspt.study.records import RunRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
XGLM = "facebook/xglm-564M"
GEMMA = "gemma-3-270m"
LANGUAGES = ["eng_Latn", "deu_Latn", "fra_Latn", "spa_Latn", "zho_Hans", "swh_Latn", "yor_Latn", "quy_Latn"]
BASE_ACCURACY = dict(zip(LANGUAGES, [0.70, 0.50, 0.48, 0.47, 0.42, 0.28, 0.24, 0.22]))
REPARAM_HELPS = frozenset({"deu_Latn", "zho_Hans", "yor_Latn"})  # +4 points; the other transfer languages lose 4
LENGTHS = (4, 16, 64)
FIGURES = ["fig2_freezing.png", "fig3_shots.png", "fig4_prompt_length.png", "fig5_reparameterization.png",
           "share_correlation.png", "distance_correlation.png", "freezing_distance.png", "parameters.png"]


def accuracy(language: str, freeze: bool, prompt_length: int, reparam_hidden: int, seed: int,
             freeze_sign: int = 1, length_sign: int = 1, reparam_helps: frozenset = REPARAM_HELPS) -> float:
    """The synthetic accuracy of one run on one language (the findings' directions are built in;
    a sign of -1 reverses one)."""
    index = LANGUAGES.index(language)
    value = BASE_ACCURACY[language]
    if language != "eng_Latn":
        value += freeze_sign * (0.02 + 0.01 * index) * freeze  # freezing helps, more for later languages
        steps_from_longest = len(LENGTHS) - 1 - LENGTHS.index(prompt_length)  # 2 for length 4, 0 for 64
        value += length_sign * (0.01 + 0.005 * index) * steps_from_longest
        if reparam_hidden:
            value += 0.04 if language in reparam_helps else -0.04
    return value + (0.01 if seed == 1 else 0.0)  # a seed moves every language alike


def config(model: str, freeze: bool, prompt_length: int, reparam_hidden: int, seed: int, shots: int = 8) -> dict:
    """A canonical config as ``RunConfig.canonical`` writes it."""
    return {
        "model": model, "dtype": "float32", "data": "../shared/sib200", "train_lang": "eng_Latn", "shots": shots,
        "label_words": None, "allow_subword_labels": False, "prompt_length": prompt_length,
        "reparam_hidden": reparam_hidden, "freeze": freeze, "epochs": 20, "lr": 0.005,
        "model_lr": None if freeze else 1e-5, "batch_size": 8, "seed": seed, "max_length": 128,
        "special_tokens": "tokenizer", "engine": "cached" if freeze else "naive", "langs": LANGUAGES,
        "save_model": False,
    }


def write_run(store: Path, cfg: dict, results: list[dict], status: str = "done", torch_version: str = "2.13.0", **extra) -> Path:
    run_id = "-".join(str(cfg[k]).replace("/", "_") for k in ("model", "freeze", "prompt_length", "reparam_hidden", "shots", "seed"))
    run_id += f"-{cfg['method']}" if "method" in cfg else ""
    record = RunRecord(
        run_id=run_id, status=status, config=cfg, results=results,
        trainable_parameters=cfg["prompt_length"] * 1024 + (cfg["reparam_hidden"] * 2048 if cfg["reparam_hidden"] else 0)
        + (0 if cfg["freeze"] else 564_000_000),
        stored_parameters=cfg["prompt_length"] * 1024, stored_bytes=cfg["prompt_length"] * 4096 + 600,
        versions={"xlspt": "0.1.0", "torch": torch_version, "transformers": "5.24.0", "python": "3.11.2"},
        device={"device": "cpu", "dtype": "float32", "name": "test CPU"}, **extra,
    )
    run_dir = store / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "record.json", "w", encoding="utf-8") as handle:
        json.dump(record.to_dict(), handle)
    return run_dir


def build_store(root: Path, models=(XGLM,), shots=(8,), **effects) -> Path:
    """The grid of the module docstring, plus one failed run and one unfinished run directory;
    ``effects`` go to :func:`accuracy`."""
    store = root / "store"
    for model in models:
        for freeze in (True, False):
            for length in LENGTHS:
                for hidden in (0, 200):
                    for seed in (0, 1):
                        for k in shots:
                            results = [
                                {"language": lang, "accuracy": accuracy(lang, freeze, length, hidden, seed, **effects),
                                 "macro_f1": 0.9 * accuracy(lang, freeze, length, hidden, seed, **effects), "n": 204}
                                for lang in LANGUAGES
                            ]
                            # More shots help a little, so that figure 3 has a slope.
                            if k != 8:
                                for r in results:
                                    r["accuracy"] += 0.01 * (k // 8)
                            write_run(store, config(model, freeze, length, hidden, seed, shots=k), results)
    write_run(store, config(models[0], True, 4, 0, seed=7), [], status="failed", error="CUDA out of memory\ntraceback...")
    (store / "runs" / "unfinished-run").mkdir()
    return store


def remove_runs(store: Path, **match) -> int:
    """Delete the run directories whose config has all of ``match``'s values; returns how many."""
    removed = 0
    for record_path in list((store / "runs").glob("*/record.json")):
        cfg = json.loads(record_path.read_text())["config"]
        if all(cfg[k] == v for k, v in match.items()):
            shutil.rmtree(record_path.parent)
            removed += 1
    assert removed, f"no run matched {match}"
    return removed


def finding(report: dict, name_start: str, model: str) -> dict:
    rows = [r for r in report["findings"] if r["finding"].startswith(name_start) and r["model"] == model]
    assert len(rows) == 1, rows
    return rows[0]


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The whole grid's report, shared by the tests that only read it: (output directory, returned dict)."""
    root = tmp_path_factory.mktemp("full")
    report = write_report(build_store(root), root / "report")
    return root / "report", report


def test_runs_csv_has_one_row_per_run_and_language(full):
    out, report = full
    assert report["runs"] == 24 and report["failed"] == 1
    frame = pd.read_csv(out / "runs.csv")
    assert len(frame) == 24 * len(LANGUAGES)
    config_keys = list(config(XGLM, True, 4, 0, 0))
    assert list(frame.columns) == config_keys + ["run_id", "protocol", "language", "accuracy", "macro_f1"]
    assert set(frame["protocol"]) == {"zero-shot"}
    assert frame.groupby("run_id")["language"].nunique().eq(len(LANGUAGES)).all()
    assert json.loads(frame["langs"].iloc[0]) == LANGUAGES  # lists are JSON-encoded
    row = frame[(frame["freeze"] == False) & (frame["prompt_length"] == 64) & (frame["reparam_hidden"] == 200)  # noqa: E712
                & (frame["seed"] == 1) & (frame["language"] == "yor_Latn")]
    assert row["accuracy"].item() == pytest.approx(accuracy("yor_Latn", False, 64, 200, 1))


def test_summary_averages_seeds_per_configuration(full):
    out, _ = full
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 12 and "seed" not in summary.columns
    assert summary["n_seeds"].eq(2).all()
    row = summary[(summary["freeze"]) & (summary["prompt_length"] == 4) & (summary["reparam_hidden"] == 0)].iloc[0]
    transfer = [lang for lang in LANGUAGES if lang != "eng_Latn"]
    per_seed = [np.mean([accuracy(lang, True, 4, 0, seed) for lang in transfer]) for seed in (0, 1)]
    assert row["transfer_mean"] == pytest.approx(np.mean(per_seed))
    assert row["transfer_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["english_mean"] == pytest.approx(np.mean([accuracy("eng_Latn", True, 4, 0, s) for s in (0, 1)]))
    # XGLM's pretraining holds all 8 of these languages except Yoruba.
    in_xglm = [lang for lang in LANGUAGES if lang != "yor_Latn"]
    assert row["pretraining_mean"] == pytest.approx(np.mean([np.mean([accuracy(lang, True, 4, 0, s) for lang in in_xglm]) for s in (0, 1)]))
    assert summary["study_52_mean"].isna().all()  # only 8 of the 52 were evaluated


def test_findings_supported_where_the_data_support_them(full):
    out, report = full
    freezing = finding(report, "freezing", "xglm-564M")
    assert freezing["verdict"] == SUPPORTED and freezing["n_languages"] == 7
    # The frozen arm is 2 + 1*i points better on transfer language i = 1..7: mean 6 points.
    assert freezing["effect"] == pytest.approx(6.0)
    lengths = finding(report, "shorter prompts", "xglm-564M")
    assert lengths["verdict"] == SUPPORTED and "Page" in lengths["test"]
    reparam = finding(report, "reparameterization", "xglm-564M")
    assert reparam["verdict"] == SUPPORTED
    assert reparam["helped_share"] == pytest.approx(3 / 7) and reparam["hurt_share"] == pytest.approx(4 / 7)
    assert 0 < reparam["helped_ci_low"] < 3 / 7 < reparam["helped_ci_high"] < 1
    # The gain from freezing rises with i, and the languages are listed from nearest to English to farthest.
    distance = finding(report, "distant languages", "xglm-564M")
    assert distance["verdict"] == SUPPORTED and distance["effect"] == pytest.approx(1.0) and distance["n_languages"] == 7
    assert distance["slope_no_mf"] < distance["slope_mf"] < 0  # accuracy falls with distance, less so with MF
    assert distance["slope_mf_ci_low"] < distance["slope_mf"] < distance["slope_mf_ci_high"]
    assert "flatter with MF" in distance["detail"]
    table = pd.read_csv(out / "findings.csv")
    assert len(table) == 4 and set(table["model"]) == {"xglm-564M"}  # one model: no pooled row


def test_distance_table_holds_each_languages_gain_from_freezing(tmp_path):
    grid = build_grid(read_store(build_store(tmp_path)).done)
    table = freezing_distance_table(grid).set_index("language")
    gains = {lang: 2.0 + 1.0 * LANGUAGES.index(lang) for lang in LANGUAGES[1:]}  # points, as built
    assert table["gain"].to_dict() == pytest.approx(gains)
    assert (table["frozen"] - table["unfrozen"]).to_dict() == pytest.approx(gains)
    assert table.loc["deu_Latn", "distance"] == pytest.approx(typological_distance("deu_Latn"))


def test_findings_contradicted_when_the_data_go_the_other_way(tmp_path):
    report = write_report(build_store(tmp_path, freeze_sign=-1, length_sign=-1), tmp_path / "report")
    for name in ("freezing", "shorter prompts", "distant languages"):
        row = finding(report, name, "xglm-564M")
        assert row["verdict"] == CONTRADICTED and row["effect"] < 0, row
        assert row["p_value_opposite"] < 0.05 < row["p_value"]


def test_reparameterization_helping_every_language_is_not_support(tmp_path):
    everyone = frozenset(LANGUAGES[1:])
    report = write_report(build_store(tmp_path, reparam_helps=everyone), tmp_path / "report")
    row = finding(report, "reparameterization", "xglm-564M")
    # 0 of 7 hurt: the Wilson interval (0-35%) cannot rule out "some", nor show it: not supported.
    assert row["verdict"] == NOT_SUPPORTED and row["hurt_share"] == 0 and row["helped_share"] == 1
    assert row["hurt_ci_high"] == pytest.approx(0.354, abs=0.01)


def test_two_prompt_lengths_use_a_wilcoxon_test(tmp_path):
    store = build_store(tmp_path)
    remove_runs(store, prompt_length=64)
    report = write_report(store, tmp_path / "report")
    lengths = finding(report, "shorter prompts", "xglm-564M")
    assert lengths["verdict"] == SUPPORTED and "Wilcoxon" in lengths["test"]
    assert "length 4 - length 16" in lengths["effect_unit"]


@pytest.mark.parametrize(
    "removed, finding_names, figures",
    [
        ({"freeze": False}, ("freezing", "distant languages"), ("fig2_freezing.png", "freezing_distance.png")),
        ({"reparam_hidden": 200}, ("reparameterization",), ("fig5_reparameterization.png",)),
    ],
)
def test_missing_arm_gives_not_enough_runs_and_no_figure(tmp_path, removed, finding_names, figures):
    store = build_store(tmp_path)
    remove_runs(store, **removed)
    report = write_report(store, tmp_path / "report")
    for name in finding_names:
        row = finding(report, name, "xglm-564M")
        assert row["verdict"] == NOT_ENOUGH_RUNS and row["p_value"] is None
    for figure in figures:
        assert not (tmp_path / "report" / figure).exists()
        assert str(tmp_path / "report" / figure) not in report["files"]
    assert "*Not drawn:" in (tmp_path / "report" / "report.md").read_text()
    # The other findings still stand.
    others = [r for r in report["findings"] if not r["finding"].startswith(finding_names)]
    assert others and all(r["verdict"] == SUPPORTED for r in others)


def test_one_prompt_length_gives_not_enough_runs(tmp_path):
    store = build_store(tmp_path)
    remove_runs(store, prompt_length=16)
    remove_runs(store, prompt_length=64)
    report = write_report(store, tmp_path / "report")
    row = finding(report, "shorter prompts", "xglm-564M")
    assert row["verdict"] == NOT_ENOUGH_RUNS and "only prompt length 4" in row["detail"]
    assert not (tmp_path / "report" / "fig4_prompt_length.png").exists()


def test_figures_are_pngs_only_when_their_arms_exist(full):
    out, report = full
    text = (out / "report.md").read_text()
    for name in FIGURES:
        path = out / name
        if name == "fig3_shots.png":  # one shot count only: no sweep to draw, and the report says why
            assert not path.exists() and "*Not drawn: no two configurations differ only in shots.*" in text
            continue
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        assert str(path) in report["files"]
        assert f"]({name})" in text
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def test_shots_sweep_and_two_models_give_pooled_rows(tmp_path):
    store = build_store(tmp_path, models=(XGLM, GEMMA), shots=(8, 16))
    report = write_report(store, tmp_path / "report")
    assert (tmp_path / "report" / "fig3_shots.png").read_bytes()[:8] == PNG_MAGIC
    for name in ("freezing", "shorter prompts", "reparameterization", "distant languages"):
        assert finding(report, name, "all models")["verdict"] == SUPPORTED
        assert finding(report, name, GEMMA)["verdict"] == SUPPORTED
    correlations = pd.read_csv(tmp_path / "report" / "correlations.csv")
    share_rows = correlations[correlations["against"].str.contains("share")]
    # Pretraining shares exist for XGLM only, and for 6 of the 7 transfer languages (not Yoruba).
    assert set(share_rows["configuration"].str.split(",").str[0]) == {"xglm-564M"}
    assert share_rows["n_languages"].eq(6).all() and share_rows["left_out"].eq(1).all()


def test_gemma_alone_has_no_pretraining_share(tmp_path):
    report = write_report(build_store(tmp_path, models=(GEMMA,)), tmp_path / "report")
    assert not (tmp_path / "report" / "share_correlation.png").exists()
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert summary["pretraining_mean"].isna().all()
    text = (tmp_path / "report" / "report.md").read_text()
    assert "no XGLM or BLOOM configuration" in text
    assert report["runs"] == 24


def test_missing_run_leaves_a_gap(tmp_path):
    store = build_store(tmp_path)
    remove_runs(store, freeze=True, prompt_length=4, reparam_hidden=0, seed=1)  # one seed of one configuration
    remove_runs(store, freeze=True, prompt_length=16, reparam_hidden=0)  # a whole configuration, mid-sweep
    write_report(store, tmp_path / "report")
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert len(summary) == 11
    one_seed = summary[(summary["freeze"]) & (summary["prompt_length"] == 4) & (summary["reparam_hidden"] == 0)].iloc[0]
    assert one_seed["n_seeds"] == 1 and pd.isna(one_seed["transfer_std"])
    assert one_seed["transfer_mean"] == pytest.approx(np.mean([accuracy(l, True, 4, 0, 0) for l in LANGUAGES[1:]]))

    grid = build_grid(read_store(store).done)
    table = sweep_table(grid, "prompt_length")
    figure = sweep_plot(table, tmp_path / "gap.png", "prompt length", "gap")
    # errorbar() puts each line's label on its container; the container's first artist is the data line.
    lines = {container.get_label(): container.lines[0] for container in figure.axes[0].containers}
    gapped = lines["no reparam, MF"]
    assert list(gapped.get_xdata()) == [4, 16, 64]
    y = np.asarray(gapped.get_ydata(), dtype=float)
    assert np.isnan(y[1]) and not np.isnan(y[0]) and not np.isnan(y[2])  # broken at 16, not drawn through it
    assert not np.isnan(np.asarray(lines["reparam 200, MF"].get_ydata(), dtype=float)).any()
    assert (tmp_path / "report" / "fig4_prompt_length.png").read_bytes()[:8] == PNG_MAGIC


def test_report_md_describes_the_store_and_warns_about_mixed_environments(tmp_path):
    store = build_store(tmp_path)
    cfg = config(XGLM, True, 4, 0, seed=2)
    write_run(store, cfg, [{"language": l, "accuracy": 0.5, "macro_f1": 0.5, "n": 204} for l in LANGUAGES],
              torch_version="2.9.0")
    report = write_report(store, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Runs finished: **25**, failed: **1**" in text and "unfinished: 1" in text
    assert "**Warning:**" in text and "2.9.0" in text
    assert "CUDA out of memory" in text and "traceback" not in text  # the failure's first line only
    assert "prompt_length (varies) | 4, 16, 64" in text
    for path in report["files"]:
        assert Path(path).is_file()
    assert {Path(p).name for p in report["files"]} >= {"runs.csv", "summary.csv", "findings.csv", "report.md"}


def test_no_warning_when_environments_agree(full):
    out, _ = full
    assert "**Warning:**" not in (out / "report.md").read_text()


def test_missing_or_empty_store_raises(tmp_path):
    with pytest.raises(XlsptError, match="does not exist"):
        write_report(tmp_path / "nowhere", tmp_path / "report")
    (tmp_path / "empty").mkdir()
    with pytest.raises(XlsptError, match="no runs/ directory"):
        write_report(tmp_path / "empty", tmp_path / "report")
    store = tmp_path / "store"
    write_run(store, config(XGLM, True, 4, 0, 0), [], status="failed", error="boom")
    (store / "runs" / "still-running").mkdir()
    with pytest.raises(XlsptError, match=r"no finished runs \(1 failed, 1 unfinished"):
        write_report(store, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_unreadable_record_is_left_out_and_reported(tmp_path):
    store = build_store(tmp_path)
    broken = store / "runs" / "broken"
    broken.mkdir()
    (broken / "record.json").write_text("{not json")
    report = write_report(store, tmp_path / "report")
    assert report["runs"] == 24
    assert "broken/record.json" in (tmp_path / "report" / "report.md").read_text()


# ----------------------------------------------------------------------------- typological distance


def test_distance_orders_languages_plausibly():
    assert typological_distance("eng_Latn") == 0
    assert typological_distance("deu_Latn") < typological_distance("yor_Latn")
    assert typological_distance("swh_Latn") is not None  # study language, via its ISO 639-3 code
    assert typological_distance("xyz_Latn") is None  # unknown to URIEL: left out, not an error


def test_vectors_equal_lang2vec_get_features(monkeypatch):
    """Our reading of lang2vec's data file gives what its own get_features returns.

    lang2vec imports pkg_resources (gone from setuptools 81 on); a stand-in resolves its data files.
    """
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            shim = types.ModuleType("pkg_resources")
            # pkg_resources resolves names relative to the directory of the module named.
            shim.resource_filename = lambda module, name: str(Path(find_spec(module).origin).parent / name)
            monkeypatch.setitem(sys.modules, "pkg_resources", shim)
    monkeypatch.delitem(sys.modules, "lang2vec.lang2vec", raising=False)
    import lang2vec.lang2vec as l2v

    codes = ["eng", "deu", "zho", "yor", "quy"]
    expected = l2v.get_features(codes, "syntax_knn+phonology_knn+inventory_knn")
    for code in codes:
        assert np.array_equal(typological_vector(code), np.asarray(expected[code], dtype=float)), code


def test_the_console_script_finds_lang2vec_data(tmp_path):
    """lang2vec installs bin/lang2vec.py, which shadows the package when `xlspt` runs from bin/."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "xlspt"
    if not script.is_file():
        pytest.skip("no console script beside this interpreter")
    store = build_store(tmp_path / "store")
    proc = subprocess.run([str(script), "report", "--store", str(store), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    assert "typological distance" in report and "need the lang2vec package" not in report


# ----------------------------------------------------------------------------- quoted tables


def test_quoted_tables_are_checked_cell_by_cell(full, tmp_path):
    out, _ = full
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| freezing the model helps transfer |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    document = tmp_path / "README.md"
    quote = ["<!-- report.md: Findings of the study; key: finding, model -->", "| finding | model | verdict | effect |",
             "|---|---|---|---|", f"| {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |", "<!-- /report.md -->"]
    document.write_text("Intro\n\n" + "\n".join(quote) + "\n")
    assert stale_quotes(document, out / "report.md") == []
    document.write_text("\n".join(quote).replace(cells[3], "+5.9 points (MF - no MF)"))
    [problem] = stale_quotes(document, out / "report.md")
    assert "line 1" in problem and "'effect'" in problem and "+5.9" in problem and cells[3] in problem
    document.write_text("\n".join(quote).replace(cells[1], "bloom-560m"))
    assert "no such row" in stale_quotes(document, out / "report.md")[0]
    document.write_text("\n".join(quote).replace("Findings of the study", "Findings of another study"))
    assert "no section" in stale_quotes(document, out / "report.md")[0]
    document.write_text("\n".join(quote).replace("| effect |", "| size |"))
    assert "no column size" in stale_quotes(document, out / "report.md")[0]
    document.write_text("Intro\n\n" + "\n".join(quote).replace(cells[3], "+5.9 points (MF - no MF)") + "\n\nEnd\n")
    assert refresh_quotes(document, out / "report.md") == []
    assert stale_quotes(document, out / "report.md") == []
    assert document.read_text() == "Intro\n\n" + "\n".join(quote) + "\n\nEnd\n"
    unclosed = "Intro\n\n" + "\n".join(quote[:-1]) + "\n\nEnd of the document\n"
    document.write_text(unclosed)
    assert "no closing <!-- /report.md -->" in refresh_quotes(document, out / "report.md")[0]
    assert document.read_text() == unclosed  # nothing after the quote was replaced
    bad_key = "\n".join(quote).replace("key: finding, model", "key: finding, colour")
    document.write_text(bad_key)
    assert "no key column colour" in refresh_quotes(document, out / "report.md")[0]
    document.write_text("\n".join(quote).replace(f"| {cells[3]} |", "|"))  # a row short of a cell
    assert "'effect'" in stale_quotes(document, out / "report.md")[0]


# ----------------------------------------------------------------------------- published anchors


def test_each_configuration_and_language_beside_the_published_anchors(full):
    out, report = full
    assert str(out / "anchors.png") in report["files"] and (out / "anchors.png").read_bytes()[:8] == PNG_MAGIC
    compared = pd.read_csv(out / "anchors.csv").set_index("config_id")
    languages = pd.read_csv(out / "languages.csv")
    gpt4 = anchor_mean(GPT4, LANGUAGES)[0]
    for config_id, row in compared.iterrows():
        seed_means = languages[languages["config_id"] == config_id].set_index("language")["accuracy"]
        assert row["languages"] == len(LANGUAGES) and row["gpt4_zero_shot"] == pytest.approx(gpt4)
        assert row["accuracy_mean"] == pytest.approx(seed_means.mean())
        assert row["gpt4_zero_shot_difference"] == pytest.approx(seed_means.mean() - gpt4)
        assert row["xlmr_zero_shot_from_eng_above"] == sum(seed_means[c] > anchor_accuracy(XLMR, c) for c in LANGUAGES)
    assert languages["gpt4_zero_shot"].tolist() == [anchor_accuracy(GPT4, c) for c in languages["language"]]
    text = (out / "report.md").read_text()
    for section in ("## Against published anchors", "## Published anchors per language set",
                    "## Each language beside the published anchors", "## Published anchors on the held-out languages"):
        assert section in text
    # Shown per language: xlspt's defaults (MF, length 4, no reparameterization), here also the highest mean.
    grid = build_grid(read_store(out.parent / "store").done)
    [shown] = shown_configurations(grid)
    assert grid.configs.loc[shown, ["freeze", "prompt_length", "reparam_hidden"]].tolist() == [True, 4, 0]
    assert role(grid, shown) == "xlspt's defaults and the highest mean"
    assert compared.loc[shown, "accuracy_mean"] == compared["accuracy_mean"].max()
    assert "| language | GPT-4 | XLM-R | GPT-3.5 | " + shown + " |" in text


def test_the_highest_mean_is_shown_beside_the_defaults(tmp_path):
    store = build_store(tmp_path)
    remove_runs(store, freeze=True, prompt_length=4, reparam_hidden=0)
    write_run(store, config(XGLM, True, 4, 0, 0), [{"language": code, "accuracy": 0.2, "macro_f1": 0.2, "n": 204}
                                                   for code in LANGUAGES])
    grid = build_grid(read_store(store).done)
    defaults, best = shown_configurations(grid)
    assert role(grid, defaults) == "xlspt's defaults" and role(grid, best) == "the highest mean"
    report = write_report(store, tmp_path / "report")
    assert f"| {defaults} | {best} |" in (tmp_path / "report" / "report.md").read_text() and report["runs"]


def test_no_anchors_for_languages_the_papers_table_lacks(tmp_path):
    store = tmp_path / "store"
    cfg = {**config(XGLM, True, 4, 0, 0), "langs": ["en", "fr"]}
    write_run(store, cfg, [{"language": code, "accuracy": 0.5, "macro_f1": 0.5, "n": 10} for code in ("en", "fr")])
    write_report(store, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "no anchors to compare with" in text and "*Not drawn: none of the languages evaluated here" in text
    assert not (tmp_path / "report" / "anchors.png").exists()


def test_quoted_rows_from_elsewhere_are_named_and_left_unchecked(full, tmp_path):
    out, _ = full
    row = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| freezing the model helps"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    quote = ["<!-- report.md: Findings of the study; key: finding; not in the report: `--preset quality` -->",
             "| finding | verdict |", "|---|---|", f"| {cells[0]} | {cells[2]} |", "| `--preset quality` | measured elsewhere |",
             "<!-- /report.md -->"]
    document = tmp_path / "README.md"
    document.write_text("\n".join(quote) + "\n")
    assert stale_quotes(document, out / "report.md") == []
    assert refresh_quotes(document, out / "report.md") == [] and document.read_text() == "\n".join(quote) + "\n"
    document.write_text("\n".join(quote).replace("| `--preset quality` | measured", "| `--preset other` | measured"))
    problems = stale_quotes(document, out / "report.md")
    assert any("names '`--preset quality`' as a row not in the report" in p for p in problems)
    assert any("'`--preset other`': the report has no such row" in p for p in problems)


def test_lora_runs_get_their_own_section_beside_their_frozen_and_whole_model_arms(tmp_path):
    """LoRA runs of length 4 (plain and reparameterized, seeds 0-1): 3 points above MF plus half a point per later
    language, so above both arms, and their gain over the whole model grows down the language list."""
    from xlspt.report.adapters import ADAPTERS_DISTANCE, ADAPTERS_VS_FROZEN, ADAPTERS_VS_WHOLE

    store = build_store(tmp_path)
    before = write_report(store, tmp_path / "before")
    for hidden in (0, 200):
        for seed in (0, 1):
            results = [{"language": lang, "accuracy": accuracy(lang, True, 4, hidden, seed)
                        + (0.03 + 0.005 * LANGUAGES.index(lang) if lang != "eng_Latn" else 0),
                        "macro_f1": 0.5, "n": 204} for lang in LANGUAGES]
            cfg = {**config(XGLM, True, 4, hidden, seed), "method": "lora", "engine": "naive"}
            write_run(store, cfg, results, timings={"train": 240.0, "evaluate": 150.0, "total": 390.0})
    report = write_report(store, tmp_path / "after")
    study = [r for r in report["findings"] if r["finding"] not in (ADAPTERS_VS_FROZEN, ADAPTERS_VS_WHOLE, ADAPTERS_DISTANCE)]
    assert study == before["findings"]  # the study's findings read prompt runs only
    rows = {r["finding"]: r for r in report["findings"] if r not in study}
    assert rows[ADAPTERS_VS_FROZEN]["verdict"] == SUPPORTED and rows[ADAPTERS_VS_FROZEN]["n_comparisons"] == 2
    assert rows[ADAPTERS_VS_FROZEN]["effect"] == pytest.approx(100 * sum(0.03 + 0.005 * i for i in range(1, 8)) / 7)
    assert rows[ADAPTERS_VS_WHOLE]["verdict"] == SUPPORTED
    assert rows[ADAPTERS_DISTANCE]["n_languages"] >= 3
    out = tmp_path / "after"
    assert (out / "adapters.png").read_bytes().startswith(PNG_MAGIC)
    languages = pd.read_csv(out / "adapters.csv")
    assert list(languages.columns) == ["language", "distance", "frozen", "lora", "whole"] and len(languages) == 7
    costs = pd.read_csv(out / "adapter_costs.csv")
    assert len(costs) == 6 and set(costs.loc[costs["arm"].str.startswith("LoRA"), "train_seconds"]) == {240.0}
    text = (out / "report.md").read_text()
    assert "## How much of the model must move: low-rank adapters" in text and "## Calibrated runs" not in text
    anchored = text.split("## Low-rank adapters beside the published anchors")[1].split("## ")[0]
    assert anchored.count("| LoRA (prompt + adapters, model frozen) |") == 2 and anchored.count("| MF (prompt only) |") == 2
