"""The probe baseline: a logistic regression on the frozen read-out state of text + EOS, fitted on the
k-shot sample, saved without pickle, evaluated like a prompt, and set against prompts in the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import xlspt
from xlspt.cli import main
from xlspt.classifiers import ProbeClassifier
from xlspt.probe_readout import eos_states


@pytest.fixture
def gemma(tiny_models):
    return tiny_models["gemma3"]


def test_eos_states_read_the_eos_after_the_text(gemma):
    texts = ["the team won the match", "parliament voted"]
    states = eos_states(gemma, texts)
    assert states.shape == (2, gemma.hidden_size) and states.dtype == np.float32
    tok = gemma.tokenizer
    ids = torch.tensor([tok(texts[1])["input_ids"] + [tok.eos_token_id]])
    with torch.no_grad():
        full = gemma.model.base_model(input_ids=ids).last_hidden_state[0, -1].float().numpy()
    np.testing.assert_allclose(states[1], full, atol=1e-4)


@pytest.mark.parametrize("classes", [7, 2])
def test_probe_matches_scikit_learn_and_reloads_exactly(tmp_path, gemma, data, classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if classes == 2:  # a two-class task exercises scikit-learn's one-row binary form
        frame = pd.concat([data.split("eng_Latn", s).assign(split=s) for s in ("train", "dev", "test")])
        frame = frame[frame["label"].isin(["sports", "politics"])]
        frame.to_csv(tmp_path / "two.csv", index=False)
        data = xlspt.TaskData.resolve(tmp_path / "two.csv", split_column="split")
    probe = ProbeClassifier.train(gemma, data, shots=4, seed=1)
    assert len(probe.labels) == classes and probe.coef.shape == (classes, gemma.hidden_size)
    assert probe.metadata.C in (0.01, 0.1, 1.0, 10.0)
    sample = xlspt.sample_few_shot(data, "eng_Latn", 4, 1)
    x = eos_states(gemma, sample.train["text"].tolist())
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=probe.metadata.C, max_iter=5000, random_state=1).fit(
        scaler.transform(x), [probe.labels.index(y) for y in sample.train["label"]])
    test = data.split("eng_Latn", "test")["text"].tolist()[:20]
    states = eos_states(gemma, test)
    expected = reference.predict_proba(scaler.transform(states))
    np.testing.assert_allclose(probe.scores_of(states).exp().numpy(), expected, atol=1e-4)
    probe.save(tmp_path / "probe")
    assert sorted(p.name for p in (tmp_path / "probe").iterdir()) == ["probe.json", "probe.safetensors"]
    again = ProbeClassifier.load(tmp_path / "probe", gemma)
    assert again.predict(test) == probe.predict(test)


def test_run_with_method_probe_writes_results_like_a_prompt(tmp_path, tiny_model_dirs, sib200_dir):
    out = tmp_path / "probe-run"
    assert main(["run", "--method", "probe", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--langs", "eng_Latn,fra_Latn", "--shots", "2", "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert {"probe.json", "probe.safetensors", "results.csv", "per_class.csv", "record.json", "README.md"} <= set(names)
    assert "prompt.safetensors" not in names
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["method"] == "probe" and record["status"] == "done"
    assert [r["language"] for r in record["results"]] == ["eng_Latn", "fra_Latn"]
    assert "probe baseline" in (out / "summary.txt").read_text()


def test_probe_refuses_prompt_options():
    with pytest.raises(xlspt.XlsptError, match="method: probe is the plain baseline"):
        xlspt.study.RunConfig(method="probe", ensemble=2)


def test_report_sets_prompts_against_the_probe(tmp_path, tiny_model_dirs, sib200_dir):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {tiny_model_dirs['gemma3']}\ndata: {sib200_dir}\nlangs: [eng_Latn, fra_Latn]\n"
                    "method: [prompt, probe]\nshots: 2\nepochs: 1\nprompt_length: 2\nseed: [0, 1]\n")
    store, report = tmp_path / "store", tmp_path / "report"
    assert main(["sweep", str(spec), "--store", str(store), "--quiet"]) == 0
    assert main(["report", "--store", str(store), "--out", str(report)]) == 0
    baseline = pd.read_csv(report / "baseline.csv")
    assert baseline[["prompt_seeds", "probe_seeds", "languages"]].values.tolist() == [[2, 2, 2]]
    runs = pd.read_csv(report / "runs.csv")
    assert set(runs["method"]) == {"prompt", "probe"}  # the default, left out of a run's config, is filled in
    for method in ("prompt", "probe"):
        mean = runs[runs["method"] == method].groupby("seed")["accuracy"].mean().mean()
        assert baseline.loc[0, f"{method}_all"] == pytest.approx(mean)
    text = (report / "report.md").read_text()
    assert "Soft prompts against the probe baseline" in text


def test_predict_with_a_probe_folder(tmp_path, tiny_model_dirs, sib200_dir, capsys):
    out = tmp_path / "probe-run"
    assert main(["train", "--method", "probe", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--shots", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", "--prompt", str(out), "--format", "json", "--top-k", "3", "the team won", "parliament voted"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["the team won", "parliament voted"]
    assert all(r["label"] in xlspt.CATEGORIES and len(r["top_k"]) == 3 and r["top_k"][0]["label"] == r["label"] for r in rows)
    assert main(["predict", "--prompt", str(out), "--calibration", "batch", "x"]) == 2
