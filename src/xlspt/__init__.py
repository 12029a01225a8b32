"""xlspt: cross-lingual soft prompt tuning with a frozen multilingual causal LM.

Train a few prompt vectors on English SIB-200 examples and classify text in dozens of
other languages zero-shot (Philippy et al., 2024, "Soft Prompt Tuning for
Cross-Lingual Transfer: When Less is More").
"""

from ._version import __version__  # noqa: E402,F401
from .logs import install as _install_logs  # noqa: E402

_install_logs()

from .calibration import CalibrationConfig, Protocol  # noqa: E402
from .classifiers import (  # noqa: E402
    LoraClassifier, ProbeClassifier, PromptClassifier, SelfTrainingConfig, build_verbalizer, choose_label_words, load_classifier, self_train,
)
from .data import CATEGORIES, DataConfig, Sib200, TaskData, resolve_languages, sample_few_shot, study_languages  # noqa: E402
from .errors import XlsptError  # noqa: E402
from .evaluate import evaluate_languages, predict  # noqa: E402
from .lora import LoraConfig  # noqa: E402
from .models import EMBEDDED_DEFAULT, LoadedModel, load_model  # noqa: E402
from .soft_prompt import PromptConfig, SoftPrompt  # noqa: E402
from .results import aggregate, format_results_table  # noqa: E402
from .train import TrainConfig, train_prompt  # noqa: E402
from .verbalizer import Verbalizer  # noqa: E402

__all__ = [
    "CATEGORIES",
    "CalibrationConfig",
    "EMBEDDED_DEFAULT",
    "LoadedModel",
    "LoraClassifier",
    "LoraConfig",
    "ProbeClassifier",
    "PromptClassifier",
    "PromptConfig",
    "SelfTrainingConfig",
    "Protocol",
    "DataConfig",
    "Sib200",
    "TaskData",
    "SoftPrompt",
    "TrainConfig",
    "Verbalizer",
    "XlsptError",
    "aggregate",
    "build_verbalizer",
    "choose_label_words",
    "evaluate_languages",
    "format_results_table",
    "self_train",
    "load_classifier",
    "load_model",
    "predict",
    "resolve_languages",
    "sample_few_shot",
    "study_languages",
    "train_prompt",
]
