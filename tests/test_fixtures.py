"""The data fixtures committed for the tests: the SIB-200 excerpt and the tiny models' vocabulary. In any clone,
what the tests need of them; beside the full data, that they are what ``make_sib200_excerpt.py`` makes of it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import xlspt
from conftest import EXCERPT, VOCABULARY, tiny_vocabulary

MAKER = Path(__file__).resolve().parent / "fixtures" / "make_sib200_excerpt.py"


@pytest.fixture(scope="module")
def maker():
    spec = importlib.util.spec_from_file_location("make_sib200_excerpt", MAKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_excerpt_has_its_languages_and_every_topic_in_every_split(data, maker):
    assert data.languages() == sorted(maker.LANGUAGES)
    for lang in maker.LANGUAGES:
        for split in maker.SPLITS:
            counts = data.split(lang, split)["label"].value_counts()
            assert set(counts.index) == set(xlspt.CATEGORIES), (lang, split)
            if (lang, split) not in maker.WHOLE:
                assert (counts == maker.PER_LABEL[split]).all(), (lang, split)
    assert len(data.split("eng_Latn", "train")) == 701 and len(data.split("eng_Latn", "dev")) == 99


def test_the_excerpt_is_small_and_says_whose_sentences_it_holds():
    size = sum(p.stat().st_size for p in EXCERPT.rglob("*") if p.is_file())
    assert size < 500_000
    readme = (EXCERPT / "README.md").read_text(encoding="utf-8")
    assert all(words in readme for words in ("SIB-200", "FLORES-200", "CC BY-SA 4.0", "Adelani"))


def test_the_vocabulary_has_3000_distinct_words_topic_words_first(maker):
    words = tiny_vocabulary()
    assert len(words) == len(set(words)) == maker.VOCABULARY_SIZE and all(words)
    assert tuple(words[:len(maker.TOPIC_WORDS)]) == maker.TOPIC_WORDS


def test_the_excerpt_is_sib200s_own_lines(full_sib200_dir, maker):
    for lang in maker.LANGUAGES:
        for split in maker.SPLITS:
            kept = (EXCERPT / lang / f"{split}.tsv").read_text(encoding="utf-8")
            assert kept == "\n".join(maker.excerpt_lines(full_sib200_dir, lang, split)) + "\n", (lang, split)
        assert (EXCERPT / lang / "labels.txt").read_bytes() == (full_sib200_dir / lang / "labels.txt").read_bytes()


def test_the_committed_vocabulary_is_the_one_the_data_gives(full_sib200_dir, maker):
    """The tiny models' tokenizer, so the artifact fixtures' saved scores, are those of the data's vocabulary."""
    assert tiny_vocabulary() == maker.vocabulary_from(full_sib200_dir)
    assert VOCABULARY.read_text(encoding="utf-8") == "\n".join(maker.vocabulary_from(full_sib200_dir)) + "\n"
