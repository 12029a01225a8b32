"""Typological distance between languages, from the URIEL knowledge base that ``lang2vec`` ships.

The study relates transfer to how far a language is from English. We measure that as the
cosine distance between the languages' URIEL vectors ``syntax_knn + phonology_knn +
inventory_knn`` (289 binary features: 103 syntax, 28 phonology, 158 phoneme inventory; the
``knn`` sets are the ones URIEL completes by nearest-neighbour prediction, so every language
it knows has every feature).

Why we read lang2vec's data file instead of calling ``lang2vec.lang2vec.get_features``: the
module imports ``pkg_resources``, which setuptools removed in version 81, so on a current
environment the import fails; it also prints to stdout and raises a bare ``Exception`` for
an unknown code. Its package data is plain NumPy: ``data/feature_predictions.npz`` holds
``data`` (languages x features x 1 source), ``langs`` (ISO 639-3 codes), ``feats`` (feature
names, prefixed ``S_``, ``P_`` and ``INV_`` for the three sets) and ``sources``
(``["predicted"]``); that is exactly what ``get_features(codes, "syntax_knn+phonology_knn+
inventory_knn")`` returns (a test checks it against the module where it can be imported).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial.distance import cosine

from ..data.languages import lang2vec_file, language_info
from ..errors import XlsptError

FEATURE_SETS = "syntax_knn+phonology_knn+inventory_knn"
_KNN_FILE = "data/feature_predictions.npz"
_KNN_PREFIXES = ("S_", "P_", "INV_")  # syntax, phonology, inventory, in get_features' order
_MISSING = -1.0  # lang2vec's marker of an unknown feature value


def iso639_3(code: str) -> str:
    """ISO 639-3 code of a SIB-200 code: the registry's for the study's 52, else the code's prefix
    (``"swh_Latn"`` -> ``"swh"``)."""
    return language_info(code).iso639_3 or code.split("_", 1)[0]


@lru_cache(maxsize=1)
def _knn_table() -> tuple[dict[str, int], np.ndarray]:
    """(row of each ISO 639-3 code, languages x features matrix), read once per process."""
    path = lang2vec_file(_KNN_FILE)
    if path is None:
        raise XlsptError("typological distances need the lang2vec package: pip install 'lang2vec>=1.1'")
    with path.open("rb") as handle, np.load(handle) as table:
        names = [str(name) for name in table["feats"]]
        columns = [i for i, name in enumerate(names) if name.startswith(_KNN_PREFIXES)]
        # Keep get_features' column order: all syntax features, then phonology, then inventory.
        columns.sort(key=lambda i: next(k for k, p in enumerate(_KNN_PREFIXES) if names[i].startswith(p)))
        source = int(np.flatnonzero(table["sources"] == "predicted")[0])
        matrix = np.asarray(table["data"][:, columns, source], dtype=np.float64)
        rows = {str(lang): i for i, lang in enumerate(table["langs"])}
    return rows, matrix


def typological_vector(code: str) -> np.ndarray | None:
    """The URIEL ``syntax_knn+phonology_knn+inventory_knn`` vector of a SIB-200 or ISO 639-3 code,
    or None when URIEL does not know the language."""
    rows, matrix = _knn_table()
    iso = iso639_3(code) if "_" in code else code
    row = rows.get(iso)
    return None if row is None else matrix[row]


@lru_cache(maxsize=4096)
def typological_distance(code: str, reference: str = "eng_Latn") -> float | None:
    """Cosine distance between the URIEL vectors of ``code`` and ``reference`` (0 = same features),
    over the features known for both; None when either language is unknown to URIEL."""
    vector, reference_vector = typological_vector(code), typological_vector(reference)
    if vector is None or reference_vector is None:
        return None
    known = (vector != _MISSING) & (reference_vector != _MISSING)
    if not known.any() or not vector[known].any() or not reference_vector[known].any():
        return None  # cosine distance is undefined for an all-zero vector
    return float(cosine(vector[known], reference_vector[known]))


def distances_from(reference: str, codes: list[str]) -> dict[str, float]:
    """Distance of each of ``codes`` from ``reference``; languages URIEL does not know are left out."""
    out = {}
    for code in codes:
        distance = typological_distance(code, reference)
        if distance is not None:
            out[code] = distance
    return out
