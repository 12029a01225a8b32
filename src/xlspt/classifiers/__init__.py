"""Trained classifiers on a frozen model, one interface (:class:`Classifier`) found through a registry by method.

- :class:`PromptClassifier` (``prompt``): a soft prompt, or an ensemble of prompts that vote;
- :class:`ProbeClassifier` (``probe``): the logistic-regression baseline on the read-out state;
- :class:`LoraClassifier` (``lora``): soft prompts with low-rank adapters on the frozen model;
- :func:`self_train`: a prompt classifier trained further on its own confident labels of unlabeled target text.

:func:`load_classifier` loads whichever is saved in a folder; :func:`classifier_class` gives the
implementation of a method. Every soft prompt trains through :mod:`xlspt.classifiers.training`.
"""

from .base import Classifier, Evaluation, FitRequest, Method, classifier_class, load_classifier, register, saved_method
from .lora import LoraClassifier
from .probe import ProbeClassifier
from .label_words import choose_label_words
from .prompt import PromptClassifier, stacked_reference
from ..verbalizer import build_verbalizer
from .scoring import ABSTAIN, PassOptions, ScoreRequest, classify_requests, score_requests, scored_predictions
from .self_training import SelfTrainingConfig, SelfTrainingScope, pseudo_labels, self_train
from .training import FinishedJob, PromptJob, train_prompt_jobs

__all__ = [
    "Classifier", "Evaluation", "FinishedJob", "FitRequest", "LoraClassifier", "Method", "ProbeClassifier", "PromptClassifier", "PromptJob", "build_verbalizer",
    "choose_label_words", "classifier_class", "load_classifier", "register", "saved_method", "stacked_reference",
    "train_prompt_jobs", "ABSTAIN", "PassOptions", "ScoreRequest", "classify_requests", "score_requests",
    "scored_predictions", "SelfTrainingConfig", "SelfTrainingScope", "pseudo_labels", "self_train",
]
