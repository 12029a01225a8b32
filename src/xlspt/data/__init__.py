"""Data layer: SIB-200 reading, the language registry and balanced k-shot sampling."""

from .languages import Language, language_info, resolve_languages, study_languages
from .sampling import FewShotSplit, sample_few_shot
from .sib200 import CATEGORIES, Sib200

__all__ = [
    "CATEGORIES",
    "FewShotSplit",
    "Language",
    "Sib200",
    "language_info",
    "resolve_languages",
    "sample_few_shot",
    "study_languages",
]
