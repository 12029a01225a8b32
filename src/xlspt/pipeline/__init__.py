"""One library function per command: what ``xlspt run``, ``train``, ``label-words`` and ``self-train`` do
(:mod:`.training`), ``evaluate`` and ``predict`` (:mod:`.scoring`) and ``push`` (:mod:`.sharing`), for the command
line and for Python alike.

Each function checks what it can before minutes of model loading, writes files only through the
library's rules (:mod:`xlspt.layout`, :mod:`xlspt.results.summary`, the classifiers' ``save``)
and returns what the command prints; the command line only parses, calls and prints.
"""

from .scoring import (PREDICT_CHUNK, EvaluateOptions, LoadOptions, PredictOptions, calibration_from, evaluate, predict,
                      prediction_records, prompt_folder)
from .sharing import push
from .training import RunOutcome, check_data, label_words, run, self_train, train, unlabeled_texts

__all__ = [
    "PREDICT_CHUNK", "EvaluateOptions", "LoadOptions", "PredictOptions", "RunOutcome", "calibration_from", "check_data",
    "evaluate", "label_words", "predict", "prediction_records", "prompt_folder", "push", "run", "self_train", "train",
    "unlabeled_texts",
]
