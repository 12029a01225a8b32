"""Per-class scores, confusion matrices and their files (xlspt.results.classes)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from xlspt.results.classes import (PER_CLASS_COLUMNS, confusion, format_per_class, per_class_rows, plot_confusion,
                                  safe_name, write_class_reports)

# Deliberately not alphabetical, so that any sorting of the labels shows. "c" is never predicted
# and one "a" is answered "abstain", a label outside LABELS.
LABELS = ["c", "a", "b"]
GOLD = ["a", "a", "a", "a", "b", "b", "b", "c", "c"]
PRED = ["a", "a", "b", "abstain", "b", "a", "b", "a", "b"]


def _png_and_no_temporaries(path, directory):
    assert path.is_file() and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


def test_per_class_rows_match_hand_computed_scores():
    # a: predicted at 0, 1, 5, 7 (2 right) -> P = 2/4; gold at 0-3 (2 found, "abstain" is wrong) -> R = 2/4.
    # b: predicted at 2, 4, 6, 8 (2 right) -> P = 2/4; gold at 4-6 -> R = 2/3; F1 = 2PR / (P + R) = 4/7.
    # c: never predicted -> P = 0 by zero_division; both gold c missed -> R = 0, F1 = 0.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0 must keep sklearn quiet
        rows = per_class_rows(GOLD, PRED, LABELS, "deu_Latn")
    assert [list(row) for row in rows] == [PER_CLASS_COLUMNS] * 3
    assert [row["label"] for row in rows] == LABELS
    assert {row["language"] for row in rows} == {"deu_Latn"}
    expected = {"c": (0.0, 0.0, 0.0, 2), "a": (0.5, 0.5, 0.5, 4), "b": (0.5, 2 / 3, 4 / 7, 3)}
    for row in rows:
        precision, recall, f1, support = expected[row["label"]]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support and isinstance(row["support"], int)


def test_label_order_is_respected():
    forward = per_class_rows(GOLD, PRED, LABELS, "x")
    backward = per_class_rows(GOLD, PRED, LABELS[::-1], "x")
    assert [row["label"] for row in backward] == LABELS[::-1]
    assert backward == forward[::-1]


def test_prediction_outside_labels_counts_as_wrong():
    # Only the abstention differs from a perfect answer: a's recall drops to 3/4, its precision stays 1.
    rows = per_class_rows(["a", "a", "a", "a", "b"], ["a", "a", "a", "abstain", "b"], ["a", "b"], "x")
    assert rows[0]["recall"] == pytest.approx(0.75) and rows[0]["precision"] == pytest.approx(1.0)
    assert rows[1]["recall"] == pytest.approx(1.0) and rows[1]["precision"] == pytest.approx(1.0)


def test_confusion_counts_and_sums():
    matrix = confusion(GOLD, PRED, LABELS)
    assert matrix.dtype.kind == "i"
    np.testing.assert_array_equal(matrix, [[0, 1, 1],   # gold c -> a, b
                                           [0, 2, 1],   # gold a -> a, a, b (the abstention has no column)
                                           [0, 1, 2]])  # gold b -> b, a, b
    assert matrix.sum() == len(GOLD) - 1  # all but the abstention
    np.testing.assert_array_equal(matrix.sum(axis=1), [2, 3, 3])
    np.testing.assert_array_equal(matrix.sum(axis=0), [0, 4, 4])  # c never predicted


@pytest.mark.parametrize("n", [2, 20])
def test_plot_confusion_writes_a_png_atomically(tmp_path, n):
    labels = [f"category_{i}" for i in range(n)]
    matrix = np.random.default_rng(0).integers(0, 30, size=(n, n))
    matrix[0] = 0  # an empty gold row must not divide by zero
    path = plot_confusion(matrix, labels, "test", tmp_path / "sub" / "m.png")
    assert path == tmp_path / "sub" / "m.png"
    _png_and_no_temporaries(path, tmp_path)


def test_plot_confusion_rejects_a_mismatched_matrix(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plot_confusion(np.zeros((2, 3), dtype=int), ["a", "b"], "t", tmp_path / "m.png")


def test_safe_name():
    assert safe_name("deu_Latn") == "deu_Latn"
    assert safe_name("zh-Hans.v2") == "zh-Hans.v2"
    assert safe_name("a/b c:é") == "a_b_c__"
    assert safe_name("..") == "_" and safe_name("") == "_"


def test_write_class_reports(tmp_path):
    languages = ["deu_Latn", "zho/Hans"]
    per_class = pd.DataFrame([row for language in languages for row in per_class_rows(GOLD, PRED, LABELS, language)])
    confusions = {language: confusion(GOLD, PRED, LABELS) for language in languages}
    paths = write_class_reports(tmp_path, per_class, confusions, LABELS)
    assert paths == [tmp_path / "per_class.csv", tmp_path / "confusion" / "deu_Latn.png",
                     tmp_path / "confusion" / "zho_Hans.png"]
    text = (tmp_path / "per_class.csv").read_text()
    assert text.splitlines()[0] == ",".join(PER_CLASS_COLUMNS)
    assert "deu_Latn,b,0.500000,0.666667,0.571429,3" in text
    back = pd.read_csv(tmp_path / "per_class.csv")
    assert list(back["label"]) == LABELS * 2 and list(back["support"]) == [2, 4, 3] * 2
    for path in paths[1:]:
        _png_and_no_temporaries(path, tmp_path)


def test_write_class_reports_refuses_colliding_names(tmp_path):
    per_class = pd.DataFrame(per_class_rows(GOLD, PRED, LABELS, "a/b"))
    matrix = confusion(GOLD, PRED, LABELS)
    with pytest.raises(ValueError, match="collide"):
        write_class_reports(tmp_path, per_class, {"a/b": matrix, "a_b": matrix}, LABELS)


def test_format_per_class():
    rows = per_class_rows(GOLD, PRED, LABELS, "deu_Latn") + per_class_rows(GOLD, GOLD, LABELS, "fra_Latn")
    per_class = pd.DataFrame(rows)
    text = format_per_class(per_class, "deu_Latn")
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # header + 3 rows, fixed width
    assert lines[1].split() == ["c", "0.0", "0.0", "0.0", "2"]
    assert lines[3].split() == ["b", "50.0", "66.7", "57.1", "3"]
    with pytest.raises(ValueError):
        format_per_class(per_class, "eng_Latn")
