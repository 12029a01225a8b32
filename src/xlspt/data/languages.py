"""The language registry: SIB-200 codes, the study's 52 target languages and their facts.

The study (Philippy et al., 2024) evaluates on the union of XGLM's 30 and BLOOM's 38
pretraining languages. Each entry carries the share of that model family's
pretraining data (``None`` where the language was not in its pretraining), so that
averages can be taken over the languages a model supports.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from importlib.resources import files
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import XlsptError

STUDY_SET = "52"
ALL_SET = "all"
#: SIB-200 languages outside the 52 whose labelled dev splits are for choosing settings.
DEVELOPMENT_SET = "dev"
#: SIB-200 languages outside the 52 and the development set, that no setting is ever chosen on.
HELD_OUT_SET = "held-out"
#: The seed, and the sizes, of the draw that fixed the development and held-out sets.
LANGUAGE_SETS_DRAW = {"seed": 0, "dev": 24, "held-out": 40}


@dataclass(frozen=True)
class Language:
    """One SIB-200 language. ``code`` is the SIB-200 folder name, e.g. ``"swh_Latn"``."""

    code: str
    iso639_3: str | None = None
    name: str | None = None
    xglm_share: float | None = None
    bloom_share: float | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.code

    def in_pretraining_of(self, family: str) -> bool | None:
        """Whether ``family`` ("xglm" or "bloom") saw this language in pretraining; None if unknown."""
        if family == "xglm":
            return self.xglm_share is not None
        if family == "bloom":
            return self.bloom_share is not None
        return None


def _share(value: str) -> float | None:
    return float(value) if value.strip() else None


@lru_cache(maxsize=1)
def study_languages() -> tuple[Language, ...]:
    """The study's 52 target languages, in the study's order (by XGLM pretraining share)."""
    text = files("xlspt.data").joinpath("study_languages.tsv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return tuple(
        Language(
            code=row["sib200"],
            iso639_3=row["iso639_3"],
            name=row["name"],
            xglm_share=_share(row["xglm_share"]),
            bloom_share=_share(row["bloom_share"]),
        )
        for row in rows
    )


def draw_language_sets(sib200_codes: Iterable[str], seed: int, sizes: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """The seeded draw that fixed the development and held-out sets: SIB-200's languages outside the 52,
    sorted, shuffled with ``seed``, cut into ``sizes`` in order. Each set is returned sorted."""
    import random

    study = {lang.code for lang in study_languages()}
    pool = sorted(set(sib200_codes) - study)
    random.Random(seed).shuffle(pool)
    sets, start = {}, 0
    for name, size in sizes.items():
        sets[name] = tuple(sorted(pool[start:start + size]))
        start += size
    return sets


@lru_cache(maxsize=1)
def language_sets() -> dict[str, tuple[str, ...]]:
    """The study's 52 (target languages) and the fixed development and held-out sets, all disjoint
    (``language_sets.tsv``, written by :func:`draw_language_sets` with :data:`LANGUAGE_SETS_DRAW`).

    The 52's test splits give the headline; the development languages' dev splits (half labelled, for
    choosing settings; half as unlabeled text) choose settings; the held-out languages' test splits show
    whether the choices hold where nobody looked.
    """
    text = files("xlspt.data").joinpath("language_sets.tsv").read_text(encoding="utf-8")
    sets: dict[str, list[str]] = {DEVELOPMENT_SET: [], HELD_OUT_SET: []}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        sets[row["set"]].append(row["sib200"])
    return {STUDY_SET: tuple(lang.code for lang in study_languages()), **{k: tuple(v) for k, v in sets.items()}}


def language_info(code: str) -> Language:
    """Facts about ``code``; languages outside the study set get an entry with the code only."""
    for lang in study_languages():
        if lang.code == code:
            return lang
    return Language(code=code)


def lang2vec_file(name: str) -> Path | None:
    """A data file that the lang2vec package ships (``data/...``), or ``None`` where it is not installed.

    Located through the installed distribution, not by importing it: lang2vec also installs a script
    bin/lang2vec.py, which shadows the package when a console script runs from bin/, and its module
    imports ``pkg_resources``, which current setuptools no longer has.
    """
    try:
        path = Path(str(distribution("lang2vec").locate_file(f"lang2vec/{name}")))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _iso639_1() -> dict[str, str]:
    """ISO 639-3 -> ISO 639-1, for the languages that have a two-letter code (lang2vec's table of them)."""
    path = lang2vec_file("data/letter_codes.json")
    if path is None:
        return {}
    # The table also maps ISO 639-2/B codes (fre, ger); only the two-letter keys are ISO 639-1.
    return {three: two for two, three in json.loads(path.read_text(encoding="utf-8")).items() if len(two) == 2}


def hub_language_code(code: str) -> str | None:
    """The code of ``code``'s language as the Hugging Face Hub's ``language:`` metadata takes it: ISO 639-1
    where the language has one, else ISO 639-3 (``eng_Latn`` -> ``en``, ``swh_Latn`` -> ``swh``: Swahili's
    ``sw`` is the macrolanguage's code); ``None`` for a name that is no language code."""
    base = re.split(r"[_-]", str(code).strip(), maxsplit=1)[0]
    if re.fullmatch(r"[a-z]{2}", base):
        return base
    if re.fullmatch(r"[a-z]{3}", base):
        return _iso639_1().get(base, base)
    return None


#: ISO 639-3 macrolanguages (what a two-letter code names) -> the individual language SIB-200 (FLORES-200) has.
MACROLANGUAGES = {"ara": "arb", "swa": "swh", "fas": "pes", "msa": "zsm", "est": "ekk", "lav": "lvs", "uzb": "uzn",
                  "aze": "azj", "mon": "khk", "ori": "ory", "pus": "pbt", "orm": "gaz", "nep": "npi", "aym": "ayr",
                  "que": "quy", "yid": "ydd", "sqi": "als", "kur": "kmr", "grn": "grn", "zho": "zho"}


@lru_cache(maxsize=1)
def sib200_codes() -> tuple[str, ...]:
    """SIB-200's 205 language codes (``fra_Latn``...), from the package (no data needed)."""
    text = files("xlspt.data").joinpath("sib200_codes.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def canonical_language(code: str, known: Iterable[str] | None = None) -> str:
    """``code`` as a code of ``known`` (default: SIB-200's): a language code without a script (``fr``, ``fra``) is
    mapped to the one code of that language, so that what reads the script (content-free calibration) never loses
    it. A code ``known`` has, or no language code at all, comes back as it is (the caller says what is unknown).

    Raises :class:`XlsptError` where the language is written in several scripts (``zho``: ``zho_Hans`` or
    ``zho_Hant``), naming them.
    """
    code = str(code).strip()
    known = tuple(known) if known is not None else sib200_codes()
    if code in known or not re.fullmatch(r"[A-Za-z]{2,3}", code):
        return code
    base = code.lower()
    if len(base) == 2:
        base = {two: three for three, two in _iso639_1().items()}.get(base, base)
    base = MACROLANGUAGES.get(base, base)
    candidates = sorted(k for k in known if k.split("_", 1)[0] == base)
    if len(candidates) > 1:
        raise XlsptError(f"language {code!r} is written in several scripts here: name one of {', '.join(candidates)}")
    return candidates[0] if candidates else code


def resolve_languages(spec: str | Sequence[str], available: Iterable[str]) -> list[str]:
    """Turn ``"52"``, ``"dev"``, ``"held-out"`` (:func:`language_sets`), ``"all"`` or ``"eng_Latn,fra_Latn"``
    (or a list of codes; ``fr`` or ``fra`` for the one code of that language: :func:`canonical_language`) into
    SIB-200 codes.

    Raises :class:`XlsptError` for an empty list or a code that ``available`` lacks.
    """
    available = list(available)
    if isinstance(spec, str):
        key = spec.strip()
        if key in (STUDY_SET, DEVELOPMENT_SET, HELD_OUT_SET):
            codes = list(language_sets()[key])
        elif key.lower() == ALL_SET:
            codes = sorted(available)
        else:
            codes = [c.strip() for c in key.split(",") if c.strip()]
    else:
        codes = [c.strip() for c in spec if c.strip()]
    if not codes:
        raise XlsptError("no languages given: pass --langs 52, --langs all, or codes such as eng_Latn,fra_Latn")
    known = set(available)
    codes = [canonical_language(c, known) for c in codes]
    unknown = [c for c in codes if c not in known]
    if unknown and isinstance(spec, str) and spec.strip() in (DEVELOPMENT_SET, HELD_OUT_SET):
        raise XlsptError(f"the {spec.strip()} languages are SIB-200's, and this data lacks {unknown[0]}: "
                         "use them with SIB-200, or name your data's languages")
    if unknown:
        hint = _closest(unknown[0], known)
        raise XlsptError(
            f"unknown language {unknown[0]!r}{hint}: use SIB-200 codes such as eng_Latn "
            "(`xlspt languages` lists them)"
        )
    return list(dict.fromkeys(codes))


def _closest(code: str, known: set[str]) -> str:
    import difflib

    match = difflib.get_close_matches(code, sorted(known), n=1)
    return f" (did you mean {match[0]}?)" if match else ""
