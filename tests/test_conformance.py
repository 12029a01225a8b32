"""The same checks over every registered method (scikit-learn's ``check_estimator`` is the pattern): fit, save,
load, score shape and probabilities, the batched primitive, calibration refusals, metadata round trip.

A new method is checked by adding its fast fitting settings to :data:`FAST` (one line); a method without
an entry fails :func:`test_every_registered_method_is_checked`.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from xlspt.calibration import CalibrationConfig
from xlspt.classifiers import FitRequest, Method, PassOptions, ScoreRequest, classifier_class, load_classifier, score_requests
from xlspt.errors import XlsptError
from xlspt.lora import LoraConfig
from xlspt.soft_prompt import PromptConfig
from xlspt.train import TrainConfig

#: Each method's fitting settings that make it fast on the tiny models: one line per method.
FAST = {
    Method.PROMPT: dict(prompt=PromptConfig(length=2), training=TrainConfig(epochs=1, batch_size=4, lr=0.05)),
    Method.PROBE: dict(),
    Method.LORA: dict(prompt=PromptConfig(length=2), training=TrainConfig(epochs=1, batch_size=4, lr=0.05),
                      lora=LoraConfig(rank=2)),
}

TEXTS = ["The team won the final match.", "Parliament voted on the new law.", "A new vaccine was tested.",
         "The film opened in cinemas."]
LANGS = ["fra_Latn", "deu_Latn"]


def test_every_registered_method_is_checked():
    assert set(FAST) == set(Method)


@pytest.fixture(scope="module", params=list(Method), ids=lambda m: m.value)
def fitted(request, tiny_models, data, tmp_path_factory):
    method = request.param
    kind = classifier_class(method)
    model = tiny_models["gemma3"]
    [clf] = kind.fit_many(model, data, [FitRequest(shots=2, seed=1, name=method.value, **FAST[method])], progress=False)
    folder = tmp_path_factory.mktemp(f"conformance-{method.value}")
    clf.save(folder)
    return method, clf, folder


def test_fit_gives_the_registered_class_with_what_the_interface_declares(fitted):
    method, clf, _ = fitted
    assert type(clf) is classifier_class(method) and clf.method is method
    assert clf.fit_seconds > 0 and clf.stored_parameters > 0 and clf.trainable_parameters > 0
    assert clf.size >= 1 and len(clf.labels) >= 2 and isinstance(clf.takes_calibration, bool)
    entries = clf.record_entries()
    assert {"best_epoch", "best_val_loss", "history", "protocol", "notes"} <= set(entries)
    assert isinstance(clf.fit_summary(), str) and isinstance(clf.protocol_label(), str)


def test_save_and_load_round_trip_the_metadata_and_the_scores(fitted, tiny_models):
    method, clf, folder = fitted
    loaded = load_classifier(folder, tiny_models["gemma3"])
    assert type(loaded) is type(clf)
    assert loaded.sidecar_dict() == clf.sidecar_dict()
    assert type(clf).load_sidecar(folder).to_dict() == clf.sidecar_dict()
    assert loaded.readout == clf.readout and tuple(loaded.labels) == tuple(clf.labels)
    torch.testing.assert_close(loaded.scores(TEXTS), clf.scores(TEXTS), atol=1e-5, rtol=0)


def test_scores_are_log_probabilities_of_shape_texts_by_classes(fitted):
    _, clf, _ = fitted
    scores = clf.scores(TEXTS)
    assert scores.shape == (len(TEXTS), len(clf.labels)) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores.exp().sum(dim=1), torch.ones(len(TEXTS)), atol=1e-5, rtol=0)
    assert clf.predict(TEXTS) == [clf.labels[i] for i in scores.argmax(dim=1).tolist()]
    table = clf.classify(TEXTS, top_k=2, min_confidence=0.0)
    assert list(table.columns) == ["text", "label", "probability", "top_k"] and len(table) == len(TEXTS)
    assert clf.predict([]) == [] and clf.classify([]).empty


def test_the_batched_primitive_answers_each_request_as_alone(fitted):
    _, clf, _ = fitted
    requests = [ScoreRequest(clf, TEXTS), ScoreRequest(clf, TEXTS[:2] + ["Something else entirely."]),
                ScoreRequest(clf, TEXTS[1:])]
    together = score_requests(requests, PassOptions(batch_size=8))
    for request, scores in zip(requests, together):
        alone = score_requests([request], PassOptions(batch_size=8))[0]
        torch.testing.assert_close(scores, alone, atol=1e-5, rtol=0)
    with pytest.raises(XlsptError, match="top-k"):
        ScoreRequest(clf, TEXTS, top_k=0)


def test_calibrations_a_method_cannot_use_are_refused(fitted):
    _, clf, _ = fitted
    if not clf.takes_calibration:
        for calibration in (CalibrationConfig("content-free"), CalibrationConfig("batch")):
            with pytest.raises(XlsptError, match="no calibration"):
                clf.scores(TEXTS, calibration=calibration)
        with pytest.raises(XlsptError, match="no calibration"):
            clf.scores(TEXTS, unlabeled_texts=TEXTS)
        return
    with pytest.raises(XlsptError, match="too few"):
        clf.scores(TEXTS, calibration=CalibrationConfig("batch"))
    with pytest.raises(XlsptError, match="unlabeled texts"):
        clf.scores(TEXTS, calibration=CalibrationConfig("unlabeled"))
    if getattr(clf, "reference", None) is None:  # saved without the training language's statistics
        with pytest.raises(XlsptError, match="standardize"):
            clf.scores(TEXTS * 8, calibration=CalibrationConfig("batch", standardize=True, min_batch=4))


def test_evaluate_and_evaluate_many_give_the_same_tables(fitted, data):
    _, clf, _ = fitted
    table = clf.evaluate(data, LANGS, progress=False)
    assert list(table.columns[:5]) == ["language", "accuracy", "macro_f1", "n", "protocol"]
    assert list(table["language"]) == LANGS and table["accuracy"].between(0, 1).all()
    [evaluation] = type(clf).evaluate_many([clf], data, LANGS, progress=False)
    pd.testing.assert_frame_equal(evaluation.results.reset_index(drop=True), table.reset_index(drop=True))
    assert isinstance(evaluation.engine, str)
