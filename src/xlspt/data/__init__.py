"""Data layer: labelled data of any task (SIB-200 or the user's own), the language registry and balanced k-shot sampling."""

from .languages import Language, language_info, resolve_languages, study_languages
from .sampling import FewShotSplit, sample_few_shot
from .sib200 import CATEGORIES
from .task import DataConfig, Sib200, TaskData

__all__ = [
    "CATEGORIES",
    "DataConfig",
    "FewShotSplit",
    "Language",
    "Sib200",
    "TaskData",
    "language_info",
    "resolve_languages",
    "sample_few_shot",
    "study_languages",
]
