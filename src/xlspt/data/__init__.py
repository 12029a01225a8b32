"""Data layer: labelled data of any task (SIB-200 or the user's own), the language registry, balanced k-shot sampling
and the published anchors on SIB-200."""

from .anchors import ANCHORS, Anchor, anchor_accuracy, anchor_mean
from .languages import Language, language_info, resolve_languages, study_languages
from .sampling import FewShotSplit, sample_few_shot
from .sib200 import CATEGORIES
from .task import DataConfig, Sib200, TaskData

__all__ = [
    "ANCHORS",
    "Anchor",
    "CATEGORIES",
    "DataConfig",
    "FewShotSplit",
    "Language",
    "Sib200",
    "TaskData",
    "anchor_accuracy",
    "anchor_mean",
    "language_info",
    "resolve_languages",
    "sample_few_shot",
    "study_languages",
]
