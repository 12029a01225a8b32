"""Self-training on unlabeled target text (protocol b), on a tiny model with real SIB-200 sentences."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
import torch

import xlspt
from xlspt.classifiers import PromptClassifier, SelfTrainingConfig, pseudo_labels, self_train
from xlspt.errors import ConfigError, XlsptError

UNLABELED = xlspt.CalibrationConfig("unlabeled")


@pytest.fixture(scope="module")
def ensemble(tiny_models, data):
    return PromptClassifier.train(tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2), ensemble=2,
                                  training=xlspt.TrainConfig(epochs=2, batch_size=4), calibration=UNLABELED,
                                  progress=False, recipe="study")


@pytest.fixture(scope="module")
def unlabeled(data):
    """Two languages' dev texts, labels dropped."""
    return {lang: data.split(lang, "dev")["text"].tolist() for lang in ("fra_Latn", "deu_Latn")}


def test_pseudo_labels_are_the_most_confident_balanced_per_class(ensemble, unlabeled):
    config = SelfTrainingConfig(per_class=4)
    labels = pseudo_labels(ensemble, unlabeled, config)
    assert not labels.empty
    for language, rows in labels.groupby("language"):
        counts = rows["label"].value_counts()
        assert set(counts.index) == set(ensemble.labels) and counts.nunique() == 1 and counts.iloc[0] <= 4
        scored = ensemble.classify(unlabeled[language], unlabeled_texts=unlabeled[language], language=language)
        for label, kept in rows.groupby("label"):
            predicted = scored[scored["label"] == label]["probability"].sort_values(ascending=False)
            assert kept["probability"].tolist() == pytest.approx(predicted.head(len(kept)).tolist())
            assert (kept["split"] == "validation").sum() == max(1, len(kept) // 4)
    # min_confidence: at the weakest kept text's confidence nothing changes; above the most confident, nothing is kept
    weakest, strongest = labels["probability"].min(), labels["probability"].max()
    pd.testing.assert_frame_equal(pseudo_labels(ensemble, unlabeled, SelfTrainingConfig(per_class=4, min_confidence=weakest)),
                                  labels)
    assert set(labels["language"]) == set(unlabeled)  # every language kept some: its most confident texts among them
    above = math.nextafter(strongest, 1.0)
    assert pseudo_labels(ensemble, unlabeled, SelfTrainingConfig(per_class=4, min_confidence=above)).empty


def test_self_training_continues_every_member_and_records_protocol_b(ensemble, unlabeled, data, sib200_dir, tmp_path):
    config = SelfTrainingConfig(per_class=3, epochs=2)
    tuned = self_train(ensemble, unlabeled, config, progress=False)
    assert tuned.size == ensemble.size
    assert all(not torch.equal(a, b) for a, b in zip(tuned.prompts, ensemble.prompts))
    record = tuned.metadata.self_training.to_dict()  # as its sidecar writes it
    kept = pseudo_labels(ensemble, unlabeled, config)
    assert record["protocol"] == "b" and record["scope"] == "shared"
    assert record["languages"] == kept.groupby("language").size().to_dict()
    assert len(record["fingerprints"]) == kept["text"].nunique()
    for member in tuned.metadata.members:  # the English epochs, then the self-training ones
        assert [h.get("self_training", False) for h in member.history] == [False] * 2 + [True] * 2
    assert ensemble.metadata.self_training is None  # the classifier it started from is left as it was

    tuned.save(tmp_path / "tuned")
    loaded = PromptClassifier.load(tmp_path / "tuned", ensemble.model)
    assert loaded.metadata.self_training.to_dict() == record and loaded.protocol_name == "b:unlabeled(dev)+self-trained"
    trained_on = kept["text"].iloc[0]
    with pytest.raises(XlsptError, match="1 of the texts scored are texts this classifier was self-trained on"):
        loaded.predict([trained_on, "an unseen sentence"])
    with pytest.raises(XlsptError, match="self-trained on"):
        loaded.evaluate(_test_split_is_dev(sib200_dir, "fra_Latn", tmp_path), ["fra_Latn"], progress=False)
    table = loaded.evaluate(data, ["fra_Latn"], progress=False)
    assert table["protocol"].tolist() == ["b:unlabeled(dev)+self-trained"]


def test_per_language_self_training_gives_each_language_its_own_prompts(ensemble, unlabeled):
    tuned = self_train(ensemble, unlabeled, SelfTrainingConfig(scope="per-language", per_class=3, epochs=1), progress=False)
    assert set(tuned) == set(unlabeled)  # both languages keep pseudo-labels on this data
    for language, clf in tuned.items():
        assert list(clf.metadata.self_training.languages) == [language]
    assert not torch.equal(tuned["fra_Latn"].prompt, tuned["deu_Latn"].prompt)


def test_a_standardizing_classifier_needs_its_data_to_self_train(tiny_models, data, unlabeled):
    clf = PromptClassifier.train(tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                 training=xlspt.TrainConfig(epochs=1, batch_size=4),
                                 calibration=xlspt.CalibrationConfig("unlabeled", standardize=True), progress=False, recipe="study")
    clf.fit_reference(data)
    with pytest.raises(XlsptError, match="pass data="):
        self_train(clf, unlabeled, SelfTrainingConfig(per_class=2, epochs=1), progress=False)
    tuned = self_train(clf, unlabeled, SelfTrainingConfig(per_class=2, epochs=1), data=data, progress=False)
    assert tuned.reference is not None and not torch.equal(tuned.reference.mean, clf.reference.mean)


@pytest.mark.parametrize("field, value", [("per_class", 1), ("min_confidence", 1.0), ("epochs", 0), ("scope", "everywhere")])
def test_bad_self_training_settings_name_their_field(field, value):
    with pytest.raises(ConfigError) as error:
        SelfTrainingConfig(**{field: value})
    assert error.value.field == field


def test_no_confident_texts_is_a_clear_error(ensemble):
    with pytest.raises(XlsptError, match="confident texts in every class"):
        self_train(ensemble, {"fra_Latn": ["un", "deux"]}, progress=False)



def _test_split_is_dev(sib200_dir, language, tmp_path):
    """SIB-200 layout whose ``language`` test split is its dev split (the texts self-trained on)."""
    folder = tmp_path / "swapped" / language
    folder.mkdir(parents=True)
    shutil.copy(sib200_dir / language / "dev.tsv", folder / "test.tsv")
    shutil.copy(sib200_dir / language / "labels.txt", folder / "labels.txt")
    return xlspt.Sib200.resolve(tmp_path / "swapped")


def test_the_command_line_self_trains_a_saved_prompt_that_evaluates_as_protocol_b(tiny_model_dirs, sib200_dir, tmp_path,
                                                                                   capsys):
    from xlspt.cli import main

    run, tuned = tmp_path / "run", tmp_path / "tuned"
    assert main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--langs", "eng_Latn",
                 "--out", str(run), "--epochs", "2", "--shots", "2", "--prompt-length", "2", "--calibration", "unlabeled",
                 "--quiet"]) == 0
    self_train_args = ["self-train", "--prompt", str(run), "--data", str(sib200_dir), "--langs", "fra_Latn,deu_Latn",
                       "--per-class", "3", "--epochs", "1", "--quiet"]
    capsys.readouterr()
    assert main([*self_train_args, "--out", str(tuned)]) == 0
    assert "(protocol b); wrote" in capsys.readouterr().err
    assert main(["evaluate", "--prompt", str(tuned), "--data", str(sib200_dir), "--langs", "fra_Latn", "--quiet"]) == 0
    assert "b:unlabeled(dev)+self-trained" in capsys.readouterr().out

    lines = tmp_path / "lines.txt"
    lines.write_text("Le match s'est terminé.\n")
    for extra, message in [(["--out", str(tuned)], "already holds results"),
                           (["--out", str(tmp_path / "x"), "--unlabeled-split", "test"], "the test split is what evaluate scores"),
                           (["--out", str(tmp_path / "x"), "--unlabeled", str(lines)], "--unlabeled FILE needs --lang"),
                           (["--out", str(tmp_path / "x"), "--per-class", "1"], "--per-class: must be at least 2")]:
        assert main([*self_train_args, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
