"""SIB-200 reading, validation, the language registry and k-shot sampling, on the committed excerpt of the real
data (English whole) and, for what only the full data has, on the full data."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

import xlspt
from xlspt.data import sample_few_shot, study_languages
from xlspt.data.languages import resolve_languages


def test_reads_a_split_with_its_columns_and_categories(data):
    frame = data.split("eng_Latn", "train")
    assert list(frame.columns) == ["index_id", "label", "text"]
    assert len(frame) == 701
    assert set(frame["label"]) == set(xlspt.CATEGORIES)
    assert len(data.split("swh_Latn", "test")) == 42  # the excerpt: 6 of each topic


def test_the_full_data_has_sib200s_languages_and_sizes(full_data):
    from xlspt.data.languages import sib200_codes

    assert full_data.languages() == sorted(sib200_codes())  # the package's list of the 205 codes is the data's
    assert [len(full_data.split("swh_Latn", split)) for split in ("train", "dev", "test")] == [701, 99, 204]


def test_quoted_fields_are_unquoted(data):
    texts = data.split("eng_Latn", "train")["text"]
    assert any(t.startswith('"She’s very cute') for t in texts)


def test_the_study_set_has_52_languages_with_pretraining_shares():
    langs = study_languages()
    assert len(langs) == 52
    by_code = {lang.code: lang for lang in langs}
    assert sum(lang.xglm_share is not None for lang in langs) == 30
    assert sum(lang.bloom_share is not None for lang in langs) == 38
    assert by_code["eng_Latn"].name == "English"
    assert by_code["rus_Cyrl"].in_pretraining_of("bloom") is False


def test_language_specs():
    from xlspt.data.languages import sib200_codes

    available = list(sib200_codes())
    assert len(available) == 205
    assert resolve_languages("52", available) == [lang.code for lang in study_languages()]
    assert resolve_languages("all", available) == sorted(available)
    assert resolve_languages("eng_Latn, fra_Latn", available) == ["eng_Latn", "fra_Latn"]
    with pytest.raises(xlspt.XlsptError, match="did you mean fra_Latn"):
        resolve_languages("fra_latn", available)
    with pytest.raises(xlspt.XlsptError, match="no languages"):
        resolve_languages(" , ", available)


@pytest.mark.parametrize("shots,val", [(1, 1), (8, 2), (32, 8), (58, 8)])
def test_sampling_is_balanced_with_a_quarter_for_validation(data, shots, val):
    split = sample_few_shot(data, "eng_Latn", shots, seed=0)
    assert split.train["label"].value_counts().to_dict() == dict.fromkeys(xlspt.CATEGORIES, shots)
    assert split.validation["label"].value_counts().to_dict() == dict.fromkeys(xlspt.CATEGORIES, val)


def test_sampling_is_seeded(data):
    a = sample_few_shot(data, "eng_Latn", 8, seed=0)
    b = sample_few_shot(data, "eng_Latn", 8, seed=0)
    c = sample_few_shot(data, "eng_Latn", 8, seed=1)
    pd.testing.assert_frame_equal(a.train, b.train)
    assert set(a.train["index_id"]) != set(c.train["index_id"])


def test_too_many_shots_is_a_clear_error(data):
    with pytest.raises(xlspt.XlsptError, match="use --shots 58 or fewer"):
        sample_few_shot(data, "eng_Latn", 59, seed=0)


@pytest.fixture
def broken_copy(tmp_path, sib200_dir):
    """A two-language copy of SIB-200 that tests may damage."""
    for lang in ("eng_Latn", "fra_Latn"):
        shutil.copytree(sib200_dir / lang, tmp_path / lang)
    return tmp_path


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: (d / "fra_Latn" / "test.tsv").unlink(), "missing split"),
        (lambda d: (d / "fra_Latn" / "test.tsv").write_text(""), "is empty"),
        (lambda d: (d / "fra_Latn" / "test.tsv").write_text("id\tlabel\tsentence\n1\tsports\thi\n"), "lacks the column"),
        (lambda d: (d / "fra_Latn" / "test.tsv").write_text("index_id\tcategory\ttext\n"), "has no rows"),
        (lambda d: (d / "fra_Latn" / "test.tsv").write_text("index_id\tcategory\ttext\n1\tcooking\thi\n"), "unknown category 'cooking'"),
        (lambda d: (d / "fra_Latn" / "test.tsv").write_text('index_id\tcategory\ttext\n1\tsports\t"open\n2\tsports\tx\ty\tz\n'), "is not a valid TSV file"),
        (lambda d: (d / "fra_Latn" / "test.tsv").write_bytes(b"index_id\tcategory\ttext\n1\tsports\t\xff\xfe\n"), "is not a valid TSV file"),
    ],
)
def test_bad_data_is_a_clear_error(broken_copy, damage, message):
    damage(broken_copy)
    data = xlspt.Sib200.resolve(broken_copy)
    with pytest.raises(xlspt.XlsptError, match=message):
        data.split("fra_Latn", "test")


def test_unknown_language_and_missing_directory(broken_copy, tmp_path):
    with pytest.raises(xlspt.XlsptError, match="unknown language 'deu_Latn'"):
        xlspt.Sib200.resolve(broken_copy).split("deu_Latn", "test")
    with pytest.raises(xlspt.XlsptError, match="does not exist"):
        xlspt.Sib200.resolve(tmp_path / "nowhere")


def test_data_directory_from_the_environment(monkeypatch, broken_copy):
    monkeypatch.setenv("XLSPT_DATA", str(broken_copy))
    assert xlspt.Sib200.resolve().languages() == ["eng_Latn", "fra_Latn"]
    monkeypatch.delenv("XLSPT_DATA")
    assert xlspt.Sib200.resolve().root is None  # falls back to the Hub dataset


def test_hub_dataset_code_path_through_a_local_copy(tmp_path, sib200_dir, monkeypatch):
    """The Hub loader (datasets.load_dataset with one config per language) on a local copy of the repository."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "sib200-repo"
    card = ["---", "configs:"]
    for lang in ("eng_Latn", "swh_Latn"):
        shutil.copytree(sib200_dir / lang, repo / "data" / lang)
        card += [f"- config_name: {lang}", "  data_files:"]
        for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
            card += [f"  - split: {split}", f"    path: data/{lang}/{name}.tsv"]
        card += ["  sep: \"\\t\""]
    (repo / "README.md").write_text("\n".join(card + ["---", ""]))
    data = xlspt.Sib200.resolve(f"hf:{repo}")
    assert data.languages() == ["eng_Latn", "swh_Latn"]
    local = xlspt.Sib200.resolve(sib200_dir)
    for split in ("train", "dev", "test"):
        hub_frame = data.split("swh_Latn", split)
        pd.testing.assert_frame_equal(hub_frame, local.split("swh_Latn", split), check_dtype=False)


def test_the_language_sets_are_the_seeded_draw_disjoint_and_resolvable():
    from xlspt.data.languages import LANGUAGE_SETS_DRAW, draw_language_sets, language_sets, sib200_codes

    sets = language_sets()
    codes = sorted(sib200_codes())  # SIB-200's folders (test_the_full_data_has_sib200s_languages_and_sizes)
    sizes = {k: v for k, v in LANGUAGE_SETS_DRAW.items() if k != "seed"}
    assert draw_language_sets(codes, LANGUAGE_SETS_DRAW["seed"], sizes) == {k: sets[k] for k in sizes}
    assert [len(sets[k]) for k in ("52", "dev", "held-out")] == [52, 24, 40]
    assert len(set().union(*sets.values())) == 116  # disjoint
    assert resolve_languages("held-out", codes) == list(sets["held-out"])
    with pytest.raises(xlspt.XlsptError, match="the dev languages are SIB-200's"):
        resolve_languages("dev", ["eng_Latn", "fra_Latn"])


def test_a_dev_split_cut_in_halves_keeps_every_row_once_and_the_classes_balanced(data):
    from xlspt.data.sampling import split_in_halves

    dev = data.split("fra_Latn", "dev")
    labelled, unlabeled = split_in_halves(dev, seed=0)
    assert sorted(labelled.index.tolist() + unlabeled.index.tolist()) == sorted(dev.index.tolist())
    assert abs(len(labelled) - len(unlabeled)) <= 1
    per_class = labelled["label"].value_counts() - unlabeled["label"].value_counts()
    assert per_class.abs().max() <= 1
    assert split_in_halves(dev, seed=0)[0].index.tolist() == labelled.index.tolist()


# ---------------------------------------------------------------- language codes without a script


def test_a_language_code_without_its_script_is_the_one_code_of_that_language_or_refused_with_candidates():
    from xlspt.data.languages import canonical_language, resolve_languages, sib200_codes

    assert len(sib200_codes()) == 205 and "fra_Latn" in sib200_codes()
    assert [canonical_language(c) for c in ("fr", "fra", "FR", "fra_Latn", "de", "sw", "fa")] == \
        ["fra_Latn", "fra_Latn", "fra_Latn", "fra_Latn", "deu_Latn", "swh_Latn", "pes_Arab"]
    for ambiguous, candidates in (("zh", "zho_Hans, zho_Hant"), ("zho", "zho_Hans, zho_Hant"), ("arb", "arb_Arab, arb_Latn")):
        with pytest.raises(xlspt.XlsptError, match=f"several scripts here: name one of {candidates}"):
            canonical_language(ambiguous)
    assert canonical_language("coarse") == "coarse" and canonical_language("xx") == "xx"  # not ours to refuse here
    assert resolve_languages("en,fr,swh", ["eng_Latn", "fra_Latn", "swh_Latn"]) == ["eng_Latn", "fra_Latn", "swh_Latn"]
    with pytest.raises(xlspt.XlsptError, match="several scripts"):
        resolve_languages("fra", ["fra_Latn", "fra_Arab"])  # the data's own languages decide what is ambiguous


def test_predict_maps_a_language_without_script_and_refuses_an_unknown_one():
    from xlspt.pipeline import PredictOptions

    assert PredictOptions(language="fr").language == "fra_Latn"
    assert PredictOptions(language="yor_Latn").language == "yor_Latn"
    with pytest.raises(xlspt.XlsptError, match="--lang xx: no SIB-200 language has that code"):
        PredictOptions(language="xx")
