"""The one pipeline: runs grouped by the runner read their own data and text, the commands keep earlier files
until a new one is whole, and each kind of saved classifier goes where it can be used."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import xlspt
from xlspt.classifiers import ProbeClassifier
from xlspt.cli import main
from xlspt.study import RunConfig
from xlspt.study.runner import Session, plan, run_group

FAST = ["--shots", "2", "--epochs", "1", "--prompt-length", "2", "--quiet"]


@pytest.fixture(scope="module")
def french_csv(tmp_path_factory, data):
    """A file of French rows with no language column: the data of one language only, whichever it is."""
    path = tmp_path_factory.mktemp("csv") / "french.csv"
    frames = [data.split("fra_Latn", split).assign(split=split) for split in ("train", "dev", "test")]
    pd.concat(frames).rename(columns={"label": "topic"})[["text", "topic", "split"]].to_csv(path, index=False)
    return path


def test_runs_of_one_model_on_different_data_each_train_on_their_own(tmp_path, tiny_model_dirs, sib200_dir, french_csv):
    session, records = Session(progress=False), []
    common = dict(model=str(tiny_model_dirs["gemma3"]), dtype="float32", shots=2, epochs=1, prompt_length=2,
                  langs="eng_Latn")
    runs = [plan(xlspt.study.RunConfig(data=str(sib200_dir), **common), session, tmp_path / "sib200"),
            plan(xlspt.study.RunConfig(data=str(french_csv), label_column="topic", split_column="split", **common),
                 session, tmp_path / "csv")]
    run_group(runs, session, records.append)
    assert [r.status for r in records] == ["done", "done"]
    for run in runs:
        sidecar = json.loads((run.directory / "prompt.json").read_text())
        expected = session.data(run.config)
        assert sidecar["data"]["source"] == expected.source_name  # SIB-200 (release layout), french.csv
        assert sidecar["data"]["checksum"] == expected.checksum([("eng_Latn", "train"), ("eng_Latn", "dev")])
        sample = xlspt.sample_few_shot(expected, "eng_Latn", 2, 0)
        assert sidecar["data"]["train_index_ids"] == [int(i) for i in sample.train["index_id"]]


def test_probes_that_read_text_differently_fit_as_they_would_alone(tiny_models, data):
    gemma = tiny_models["gemma3"]
    requests = [xlspt.classifiers.FitRequest(shots=4, seed=1, name="long"),
                xlspt.classifiers.FitRequest(shots=4, seed=1, readout=xlspt.engine.ReadoutConfig(max_length=16), name="short")]
    together = ProbeClassifier.fit_many(gemma, data, requests)
    alone = ProbeClassifier.train(gemma, data, shots=4, seed=1, max_length=16)
    assert together[1].metadata.validation_log_loss == alone.metadata.validation_log_loss
    assert (together[1].coef == alone.coef).all()
    assert together[0].metadata.validation_log_loss != alone.metadata.validation_log_loss


def test_evaluate_reads_a_source_without_languages_in_the_prompts_training_language(tmp_path, tiny_model_dirs, french_csv):
    data = ["--data", str(french_csv), "--label-column", "topic", "--split-column", "split"]
    prompt = tmp_path / "prompt"
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), *data, "--train-lang", "fra_Latn",
                 "--out", str(prompt), *FAST]) == 0
    assert main(["evaluate", "--prompt", str(prompt), *data, "--langs", "fra_Latn", "--quiet", "--out",
                 str(tmp_path / "eval")]) == 0
    assert pd.read_csv(tmp_path / "eval" / "results.csv")["language"].tolist() == ["fra_Latn"]


def test_train_overwrite_keeps_the_earlier_prompt_until_the_new_one_is_whole(tmp_path, tiny_model_dirs, sib200_dir,
                                                                               monkeypatch):
    out = tmp_path / "prompt"
    args = ["train", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--out", str(out), *FAST]
    assert main(args) == 0
    before = {name: (out / name).read_bytes() for name in ("prompt.json", "prompt.safetensors")}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(xlspt.pipeline.training, "train_one", interrupted)
    assert main([*args, "--overwrite", "--seed", "1"]) == 130
    assert {name: (out / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    (out / "results.csv").write_text("language,accuracy\n")  # a stale file of an earlier run in the same folder
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert (out / "prompt.json").read_bytes() != before["prompt.json"] and not (out / "results.csv").exists()


def test_a_diverged_run_that_trained_the_model_keeps_no_prompt(tmp_path, tiny_model_dirs, sib200_dir, capsys, diverging):
    out = tmp_path / "run"
    code = main(["run", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), "--no-freeze",
                 "--epochs", "3", "--langs", "eng_Latn", "--out", str(out), "--dtype", "float32", *FAST[:2], *FAST[4:]])
    assert code == 2 and "lower the learning rate" in capsys.readouterr().err
    assert not (out / "prompt.json").exists() and not (out / "prompt.safetensors").exists()


def test_evaluate_refuses_a_probe_in_one_line_and_predict_uses_it(tmp_path, tiny_model_dirs, sib200_dir, capsys):
    probe = tmp_path / "probe"
    assert main(["train", "--method", "probe", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--out", str(probe), *FAST]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--prompt", str(probe), "--data", str(sib200_dir), "--langs", "fra_Latn", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a probe, not a soft prompt" in err and "Traceback" not in err
    assert main(["predict", "--prompt", str(probe), "The team won the final."]) == 0
    assert capsys.readouterr().out.split("\t")[0] in xlspt.CATEGORIES


def test_the_python_api_refuses_an_ensemble_of_no_prompts(tiny_models, data):
    with pytest.raises(xlspt.XlsptError, match=r"ensemble: needs at least one distinct non-negative seed per member \(got 0\)"):
        xlspt.PromptClassifier.train(tiny_models["gemma3"], data, shots=2, ensemble=0, progress=False, recipe="study")


def test_an_ensemble_member_alone_carries_its_own_sample(tiny_models, data):
    ens = xlspt.PromptClassifier.train(tiny_models["gemma3"], data, shots=2, prompt=xlspt.PromptConfig(length=2),
                                       training=xlspt.TrainConfig(epochs=1), ensemble=2, progress=False, recipe="study")
    second = ens.member(1)
    assert second.metadata.data == ens.metadata.members[1].data != ens.metadata.members[0].data
    assert torch.equal(second.prompt, ens.prompts[1])


def test_a_local_sweep_runs_a_models_units_in_the_sweeps_order(tmp_path, sib200_dir, tiny_model_dirs):
    """The order of prompts packed into one evaluation pass shapes bfloat16's rounding: grouping the runs into units
    of work must not reorder them (a bfloat16 sweep gave other accuracies when it did)."""
    from xlspt.study.executors import model_groups, work_units

    session = Session(progress=False)
    spec = xlspt.study.expand({"model": str(tiny_model_dirs["gemma3"]), "data": str(sib200_dir), "dtype": "float32",
                               "prompt_length": [1, 2], "seed": [0, 1], "langs": "eng_Latn"})
    todo = [plan(config, session, tmp_path / str(i)) for i, config in enumerate(spec.runs)]
    units = work_units(todo)
    assert len(units) == 2 and [r.config.seed for r in units[0]] == [0, 0]  # a unit per training sample
    [group] = model_groups(units, lambda run: "float32", todo)
    assert [r.run_id for r in group] == [r.run_id for r in todo]


def test_run_and_evaluate_write_every_scored_text_and_limit_reads_the_first_n(tiny_model_dirs, sib200_dir, tmp_path):
    """predictions.jsonl (lm-evaluation-harness's --log_samples): one object per scored text, agreeing with results.csv."""
    out = tmp_path / "run"
    langs = "eng_Latn,fra_Latn"
    assert main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir),
                 "--langs", langs, "--out", str(out), *FAST]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    results = pd.read_csv(out / "results.csv")
    assert len(rows) == results["n"].sum()
    assert set(rows[0]) == {"language", "text", "gold", "predicted", "probabilities", "protocol"}
    for row in rows:
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
        assert row["predicted"] == max(row["probabilities"], key=row["probabilities"].get)
    for lang, group in pd.DataFrame(rows).groupby("language"):
        accuracy = float((group["gold"] == group["predicted"]).mean())
        assert accuracy == pytest.approx(results.set_index("language").at[lang, "accuracy"], abs=1e-6)
    assert main(["evaluate", "--prompt", str(out), "--data", str(sib200_dir), "--langs", langs, "--limit", "5",
                 "--out", str(tmp_path / "quick"), "--quiet"]) == 0
    quick = [json.loads(line) for line in (tmp_path / "quick" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(quick) == 10 and list(pd.read_csv(tmp_path / "quick" / "results.csv")["n"]) == [5, 5]
    assert [r["text"] for r in quick if r["language"] == "fra_Latn"] == [r["text"] for r in rows if r["language"] == "fra_Latn"][:5]
    assert json.loads((tmp_path / "quick" / "summary.json").read_text())["limit"] == 5
    assert "first 5 texts" in (tmp_path / "quick" / "summary.txt").read_text()
    assert RunConfig(limit=5).run_id(dtype="float32", data_checksum="x") != RunConfig().run_id(dtype="float32", data_checksum="x")
    assert "limit" not in RunConfig().canonical(dtype="float32", data_checksum="x")  # at its default: ids unchanged
