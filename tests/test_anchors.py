"""The published anchors (``src/xlspt/data/anchors.tsv``, the SIB-200 paper's Table 8) and their loader."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from xlspt.data.anchors import ANCHORS, ANCHORS_FILE, GPT4, GPT35, XLMR, anchor_accuracy, anchor_mean, anchor_table
from xlspt.data.languages import DEVELOPMENT_SET, HELD_OUT_SET, STUDY_SET, language_sets
from xlspt.errors import XlsptError

ROOT = Path(__file__).resolve().parents[1]


def _header() -> list[str]:
    return [line for line in files("xlspt.data").joinpath(ANCHORS_FILE).read_text(encoding="utf-8").splitlines()
            if line.startswith("#")]


def test_the_file_names_its_source_and_licence_and_ships_with_the_package():
    header = " ".join(_header())
    assert "Adelani et al." in header and "EACL 2024" in header and "Table 8" in header
    assert "aclanthology.org/2024.eacl-long.14" in header and "CC BY 4.0" in header
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert any(fnmatch.fnmatch(f"data/{ANCHORS_FILE}", pattern) for pattern in package_data["xlspt"])


def test_every_language_of_the_papers_table_and_of_xlspts_sets():
    table = anchor_table()
    assert len(table) == 204 and "nqo_Nkoo" not in table  # the paper's table has no N'Ko row
    for name in (STUDY_SET, DEVELOPMENT_SET, HELD_OUT_SET):
        assert set(language_sets()[name]) <= set(table), name
    assert all(0 <= value <= 1 for row in table.values() for value in row.values())


def test_means_equal_the_papers_printed_averages_and_the_headers_figures():
    """The header's means (over all 204 rows: the paper's printed averages; over the study's 52) are the file's."""
    header = " ".join(_header())
    columns = list(next(iter(anchor_table().values())))
    printed = re.findall(r"\(([0-9., ]+)\); over the study's 52 languages: ([0-9., ]+)\.", header)
    [(everywhere, study)] = printed
    for languages, figures in ((list(anchor_table()), everywhere), (language_sets()[STUDY_SET], study)):
        expected = [float(f) for f in figures.split(", ")]
        assert [round(100 * anchor_mean(column, languages)[0], 1) for column in columns] == expected


def test_the_anchors_over_the_study_and_held_out_languages():
    study, held_out = language_sets()[STUDY_SET], language_sets()[HELD_OUT_SET]
    assert [round(100 * anchor_mean(a, study)[0], 1) for a in (GPT4, XLMR, GPT35)] == [61.2, 73.4, 52.3]
    assert [round(100 * anchor_mean(a, held_out)[0], 1) for a in (GPT4, XLMR, GPT35)] == [49.8, 69.6, 43.6]
    assert anchor_mean(GPT4, study)[1] == 52 and anchor_mean(GPT4, held_out)[1] == 40
    assert [a.name for a in ANCHORS] == ["GPT-4", "XLM-R", "GPT-3.5"]


def test_one_language_and_unknown_ones():
    assert anchor_accuracy(GPT4, "ory_Orya") == pytest.approx(0.671)
    assert anchor_accuracy(XLMR, "ory_Orya") == pytest.approx(0.843)
    assert anchor_accuracy(GPT4, "nqo_Nkoo") is None
    assert anchor_mean(GPT4, ["nqo_Nkoo", "ory_Orya", "ory_Orya"]) == (pytest.approx(0.671), 1)
    assert anchor_mean(GPT4, ["xx_Unknown"]) == (None, 0)
    with pytest.raises(XlsptError, match="no column"):
        anchor_mean("gpt5_zero_shot", ["ory_Orya"])
