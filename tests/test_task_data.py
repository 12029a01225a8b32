"""Any labelled data: CSV, TSV and JSON Lines files and folders, Hub datasets, split and language columns,
seeded stratified splits, any label set with proposed or given label words, and their clear refusals."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import xlspt
from xlspt.data import DataConfig, TaskData, sample_few_shot

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "coarse_topics.py"


@pytest.fixture(scope="module")
def coarse(sib200_dir) -> pd.DataFrame:
    """SIB-200 English, French and Swahili relabelled to three coarse topics (the README's example task)."""
    spec = importlib.util.spec_from_file_location("coarse_topics", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(sib200_dir)


@pytest.fixture
def tiny_gemma3(tiny_models):
    return tiny_models["gemma3"]


def _columns(**extra) -> dict:
    return dict(text_column="sentence", label_column="topic", **extra)


def _rows(coarse: pd.DataFrame, lang: str, split: str) -> int:
    """How many rows of ``lang``'s ``split`` the data the table was made from has."""
    return int(((coarse["lang"] == lang) & (coarse["split"] == split)).sum())


def test_one_csv_with_language_and_split_columns(tmp_path, coarse):
    coarse.to_csv(tmp_path / "coarse.csv", index=False)
    data = TaskData.resolve(tmp_path / "coarse.csv", **_columns(language_column="lang", split_column="split"))
    assert data.languages() == ["eng_Latn", "fra_Latn", "swh_Latn"]
    assert data.labels("eng_Latn") == ("leisure", "science", "world")
    test = data.split("swh_Latn", "test")
    expected = coarse[(coarse["lang"] == "swh_Latn") & (coarse["split"] == "test")]
    assert list(test.columns) == ["index_id", "label", "text"] and len(test) == len(expected) > 0
    assert test["text"].tolist() == expected["sentence"].tolist()
    assert test["label"].tolist() == expected["topic"].tolist()
    assert not data.sib200_format


def test_split_files_with_a_language_column(tmp_path, coarse):
    for split in ("train", "dev", "test"):
        coarse[coarse["split"] == split].drop(columns="split").to_json(tmp_path / f"{split}.jsonl", orient="records",
                                                                       lines=True, force_ascii=False)
    data = TaskData.resolve(tmp_path, **_columns(language_column="lang"))
    assert data.languages() == ["eng_Latn", "fra_Latn", "swh_Latn"]
    assert len(data.split("fra_Latn", "dev")) == _rows(coarse, "fra_Latn", "dev")


def test_a_file_per_language_is_split_seeded_and_stratified(tmp_path, coarse):
    for lang, rows in coarse.groupby("lang"):
        rows.drop(columns=["lang", "split"]).to_csv(tmp_path / f"{lang}.tsv", sep="\t", index=False)
    data = TaskData.resolve(tmp_path, **_columns())
    again = TaskData.resolve(tmp_path, **_columns())
    assert data.languages() == ["eng_Latn", "fra_Latn", "swh_Latn"]
    parts = {s: data.split("eng_Latn", s) for s in ("train", "dev", "test")}
    total = int((coarse["lang"] == "eng_Latn").sum())
    assert sum(len(p) for p in parts.values()) == total
    ids = [set(p["index_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    shares = {s: p["label"].value_counts(normalize=True) for s, p in parts.items()}
    for label in ("leisure", "science", "world"):  # stratified: every split keeps the label shares
        assert abs(shares["train"][label] - shares["test"][label]) < 0.02
    assert abs(len(parts["test"]) / total - 0.2) < 0.01
    pd.testing.assert_frame_equal(parts["test"], again.split("eng_Latn", "test"))
    other = TaskData.resolve(DataConfig(source=str(tmp_path), split_seed=1, **_columns()))
    assert set(other.split("eng_Latn", "test")["index_id"]) != set(parts["test"]["index_id"])


def test_one_file_without_languages_is_the_training_language(tmp_path, coarse):
    english = coarse[coarse["lang"] == "eng_Latn"].rename(columns={"sentence": "text", "topic": "label"})
    english[["text", "label"]].to_csv(tmp_path / "tickets.csv", index=False)
    data = TaskData.resolve(tmp_path / "tickets.csv", language="deu_Latn")
    assert data.languages() == ["deu_Latn"]
    split = sample_few_shot(data, "deu_Latn", 4, seed=0)
    assert split.train["label"].value_counts().to_dict() == {"leisure": 4, "science": 4, "world": 4}


def test_sib200_layout_in_csv_and_a_missing_dev_split_carved_from_train(tmp_path, sib200_dir):
    for lang in ("eng_Latn", "fra_Latn"):
        (tmp_path / lang).mkdir()
        for split in ("train", "test"):
            frame = pd.read_csv(sib200_dir / lang / f"{split}.tsv", sep="\t", dtype=str, keep_default_na=False)
            frame.to_csv(tmp_path / lang / f"{split}.csv", index=False)
    data = TaskData.resolve(tmp_path)
    assert data.labels() == xlspt.CATEGORIES and data.sib200_format
    train, dev = data.split("eng_Latn", "train"), data.split("eng_Latn", "dev")
    assert len(train) + len(dev) == 701 and not set(train["index_id"]) & set(dev["index_id"])
    assert set(dev["label"]) == set(xlspt.CATEGORIES)


def test_hub_dataset_with_one_config_and_splits_through_a_local_copy(tmp_path, coarse, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "repo"
    repo.mkdir()
    for split in ("train", "test"):
        coarse[coarse["split"] == split].drop(columns="split").to_csv(repo / f"{split}.csv", index=False)
    data = TaskData.resolve(f"hf:{repo}", **_columns(language_column="lang"))
    assert data.languages() == ["eng_Latn", "fra_Latn", "swh_Latn"]
    assert len(data.split("swh_Latn", "test")) == _rows(coarse, "swh_Latn", "test")
    assert len(data.split("eng_Latn", "train")) + len(data.split("eng_Latn", "dev")) == 701


def test_any_number_of_classes_is_sampled_balanced_and_short_classes_are_refused(tmp_path):
    rows = [{"text": f"text {label} {i}", "label": label} for label, n in (("a", 12), ("b", 12), ("c", 5)) for i in range(n)]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    data = TaskData.resolve(tmp_path / "d.csv", split_column=None)
    few = sample_few_shot(data, "eng_Latn", 2, seed=0)
    assert few.train["label"].value_counts().to_dict() == {"a": 2, "b": 2, "c": 2}
    with pytest.raises(xlspt.XlsptError, match="class 'c' .* use --shots 3 or fewer"):
        sample_few_shot(data, "eng_Latn", 5, seed=0)


@pytest.mark.parametrize(
    "frame,options,message",
    [
        (pd.DataFrame({"sentence": ["a", "b"], "label": ["x", "y"]}), {}, "lacks the column 'text' .* pass --text-column"),
        (pd.DataFrame({"text": ["a", "b"], "topic": ["x", "y"]}), {}, "lacks the column 'label' .* pass --label-column"),
        (pd.DataFrame({"text": ["a"] * 6, "label": ["x"] * 6, "split": ["train", "train", "dev", "dev", "test", "test"]}),
         {"split_column": "split"}, "one class only"),
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "", "y"]}), {}, "empty label in row 3"),
        (pd.DataFrame({"text": ["a", " ", "c"], "label": ["x", "y", "x"]}), {}, "empty text in row 3"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"], "split": ["train", "holdout"]}), {"split_column": "split"},
         "the split 'holdout'"),
        (pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", "x", "x", "y"]}), {}, "label 'y' has 1 row"),
        (pd.DataFrame({"text": list("abcdef"), "label": ["Sports", "sports", "x", "Sports", "sports", "x"],
                       "split": ["train"] * 3 + ["dev"] * 3}), {"split_column": "split"}, "differ only in case"),
    ],
)
def test_bad_task_data_is_one_clear_line(tmp_path, frame, options, message):
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(xlspt.XlsptError, match=message):
        data = TaskData.resolve(tmp_path / "d.csv", **options)
        data.labels()


def test_unreadable_files(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "x"}\n{broken\n')
    with pytest.raises(xlspt.XlsptError, match="not a valid JSON Lines file"):
        TaskData.resolve(tmp_path / "bad.jsonl").split("eng_Latn", "train")
    (tmp_path / "latin1.csv").write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(xlspt.XlsptError, match="not a valid CSV file"):
        TaskData.resolve(tmp_path / "latin1.csv").split("eng_Latn", "train")
    with pytest.raises(xlspt.XlsptError, match="does not exist"):
        TaskData.resolve(tmp_path / "nothing.csv")


# ---------------------------------------------------------------- label words for any label set


def test_label_words_are_proposed_from_label_names(tiny_gemma3):
    from xlspt.verbalizer import propose_label_words

    tok = tiny_gemma3.tokenizer
    words = propose_label_words(tok, ("Sports", "health_news", "politics"))
    assert {k: v.strip() for k, v in words.items()} == {"Sports": "Sports", "health_news": "health", "politics": "politics"}
    verbalizer = xlspt.build_verbalizer(tiny_gemma3, labels=("Sports", "health_news", "politics"))
    assert verbalizer.labels == ("Sports", "health_news", "politics") and len(set(verbalizer.token_ids)) == 3
    given = xlspt.build_verbalizer(tiny_gemma3, {"Sports": "play"}, labels=("Sports", "politics"))
    assert given.as_dict()["Sports"] == "play"


def test_a_label_without_a_single_token_word_names_candidates(tiny_gemma3):
    from xlspt.verbalizer import propose_label_words

    with pytest.raises(xlspt.XlsptError, match=r"no single-token label word for the class 'zzqx-wvy'.*--label-words zzqx-wvy=WORD"):
        propose_label_words(tiny_gemma3.tokenizer, ("sports", "zzqx-wvy"))


def test_label_words_keep_their_leading_space():
    from xlspt.verbalizer import parse_label_words

    assert parse_label_words("sports= sports| football, politics =play", ("sports", "politics")) == {
        "sports": " sports| football", "politics": "play"}


@pytest.mark.parametrize(
    "spec,message",
    [
        ("a=x,a=y", "given twice"),
        ("a=,b=y", "is empty"),
        ("c=x", "unknown class 'c'"),
        ("x,y,z", "needs 2 words"),
    ],
)
def test_bad_label_words(spec, message):
    from xlspt.verbalizer import parse_label_words

    with pytest.raises(xlspt.XlsptError, match=message):
        parse_label_words(spec, ("a", "b"))


def test_a_label_word_of_several_tokens_is_refused(tiny_gemma3):
    with pytest.raises(xlspt.XlsptError, match="not a single token"):
        xlspt.build_verbalizer(tiny_gemma3, {"a": "sports politics", "b": "health"}, labels=("a", "b"))


def test_any_label_set_trains_saves_and_reloads_with_its_class_order(tmp_path, tiny_gemma3, coarse):
    english = coarse[coarse["lang"] == "eng_Latn"]
    english.to_csv(tmp_path / "en.csv", index=False)
    data = TaskData.resolve(tmp_path / "en.csv", **_columns(split_column="split"))
    clf = xlspt.PromptClassifier.train(tiny_gemma3, data, shots=2, prompt=xlspt.PromptConfig(length=2), label_words={"leisure": "fun"},
                                       training=xlspt.TrainConfig(epochs=1), progress=False, recipe="study")
    assert clf.verbalizer.labels == ("leisure", "science", "world")
    assert clf.verbalizer.as_dict() == {"leisure": "fun", "science": " science", "world": " world"}
    clf.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "prompt.json").read_text())
    assert meta["labels"] == ["leisure", "science", "world"]
    again = xlspt.PromptClassifier.load(tmp_path / "run", tiny_gemma3)
    assert again.verbalizer == clf.verbalizer
    texts = data.split("eng_Latn", "test")["text"].tolist()[:5]
    table = again.classify(texts, top_k=2)
    assert list(table.columns) == ["text", "label", "probability", "top_k"]
    assert table["label"].tolist() == clf.predict(texts)
    assert all(0 < p <= 1 for p in table["probability"]) and all(len(k) == 2 for k in table["top_k"])
    assert all(row["top_k"][0]["label"] == row["label"] for _, row in table.iterrows())
    abstained = again.classify(texts, min_confidence=1.0)
    assert set(abstained["label"]) == {"abstain"}
    results = again.evaluate(data, ["eng_Latn"], progress=False)
    assert results.loc[0, "n"] == len(data.split("eng_Latn", "test"))
    shutil.rmtree(tmp_path / "run")


# ---------------------------------------------------------------- the command line on a task of one's own


@pytest.fixture(scope="module")
def coarse_run(tmp_path_factory, coarse, tiny_model_dirs):
    """`xlspt run` on the coarse-topic CSV (own column names, three classes, two target languages)."""
    from xlspt.cli import main

    import torch

    threads = torch.get_num_threads()  # --threads sets the whole process's; give the other tests theirs back
    root = tmp_path_factory.mktemp("coarse")
    coarse.to_csv(root / "coarse.csv", index=False)
    out = root / "run"
    code = main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(root / "coarse.csv"),
                 "--text-column", "sentence", "--label-column", "topic", "--language-column", "lang",
                 "--split-column", "split", "--label-words", "leisure=fun", "--langs", "all", "--shots", "2",
                 "--epochs", "1", "--prompt-length", "2", "--threads", "1", "--device", "cpu", "--out", str(out), "--quiet"])
    torch.set_num_threads(threads)
    assert code == 0
    return root


def test_run_on_an_own_csv_task(coarse_run, coarse):
    out = coarse_run / "run"
    results = pd.read_csv(out / "results.csv")
    languages = ["eng_Latn", "fra_Latn", "swh_Latn"]
    assert results["language"].tolist() == languages
    assert results["n"].tolist() == [_rows(coarse, lang, "test") for lang in languages]
    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class["label"].tolist()[:3] == ["leisure", "science", "world"]
    assert sorted(p.name for p in (out / "confusion").iterdir()) == ["eng_Latn.png", "fra_Latn.png", "swh_Latn.png"]
    meta = json.loads((out / "prompt.json").read_text())
    assert meta["labels"] == ["leisure", "science", "world"] and meta["label_words"]["leisure"] == "fun"
    summary = (out / "summary.txt").read_text()
    assert "chance: 33.3%" in summary
    record = json.loads((out / "record.json").read_text())
    assert record["device"]["device"] == "cpu" and record["device"]["threads"] == 1
    assert json.loads((out / "summary.json").read_text())["device"]["threads"] == 1


def test_devices_that_are_not_there_are_refused(monkeypatch):
    import torch

    from xlspt.models.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") in ("cpu", "mps") and resolve_device("cpu") == "cpu"
    with pytest.raises(xlspt.XlsptError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(xlspt.XlsptError, match="unknown --device 'tpu'"):
        resolve_device("tpu")


def test_languages_without_known_facts_get_no_pretraining_groups():
    table = pd.DataFrame({"language": ["en", "sw"], "accuracy": [0.8, 0.5], "macro_f1": [0.8, 0.5], "n": [10, 10]})
    assert set(xlspt.aggregate(table, "en")) == {"all", "transfer"}


def test_scored_predictions_as_json_csv_and_abstentions(coarse_run, capsys):
    from xlspt.cli import main

    out = coarse_run / "run"
    assert main(["predict", "--prompt", str(out), "--format", "json", "--top-k", "2", "the team won", "parliament voted"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(r) for r in rows] == [{"text", "label", "probability", "top_k"}] * 2
    assert all(r["label"] in ("leisure", "science", "world") and 1 / 3 <= r["probability"] <= 1 for r in rows)
    assert all(r["top_k"][0] == {"label": r["label"], "probability": r["probability"]} for r in rows)
    assert main(["predict", "--prompt", str(out), "--format", "csv", "--min-confidence", "1.0", "a, \"quoted\" text"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert table.columns.tolist() == ["text", "label", "probability"]
    assert table["text"].tolist() == ['a, "quoted" text'] and table["label"].tolist() == ["abstain"]
    for bad, message in ((["--top-k", "0"], "--top-k must be at least 1"), (["--min-confidence", "2"], "between 0 and 1")):
        assert main(["predict", "--prompt", str(out), *bad, "x"]) == 2
        assert message in capsys.readouterr().err


def test_push_to_a_local_hub_and_load_back(coarse_run, tmp_path, monkeypatch, capsys, tiny_model_dirs):
    from xlspt.cli import main

    hub = tmp_path / "hub"
    assert main(["push", "--prompt", str(coarse_run / "run"), "--repo", "me/coarse-topics", "--hub", str(hub)]) == 0
    repo = hub / "me" / "coarse-topics"
    assert {"prompt.safetensors", "prompt.json", "README.md", "results.csv"} <= {p.name for p in repo.iterdir()}
    card = (repo / "README.md").read_text()
    assert "from_pretrained(\"me/coarse-topics\")" in card and "leisure" in card and "swh_Latn" in card
    capsys.readouterr()
    monkeypatch.setenv("XLSPT_HUB_DIR", str(hub))
    # The shared sidecar names a model loaded from a local folder by the folder's name alone: --model finds it
    assert main(["predict", "--prompt", "me/coarse-topics", "--model", str(tiny_model_dirs["gemma3"]), "--format", "json",
                 "the team won"]) == 0
    from_hub = json.loads(capsys.readouterr().out)
    assert main(["predict", "--prompt", str(coarse_run / "run"), "--format", "json", "the team won"]) == 0
    assert json.loads(capsys.readouterr().out) == from_hub
    clf = xlspt.PromptClassifier.from_pretrained("me/coarse-topics", str(tiny_model_dirs["gemma3"]))
    assert clf.verbalizer.labels == ("leisure", "science", "world")
    folder = tmp_path / "saved"
    clf.save_pretrained(folder)
    assert (folder / "README.md").is_file()
    url = clf.push_to_hub("me/again", hub=hub)
    assert Path(url) == hub / "me" / "again" and (hub / "me" / "again" / "prompt.json").is_file()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--label-column", "nope"], "lacks the column 'nope'"),
        (["--label-words", "leisure=fun,leisure=play"], "given twice"),
        (["--label-words", "leisure=sports politics"], "not a single token"),
        (["--label-words", "cooking=fun"], "unknown class 'cooking'"),
        (["--langs", "deu_Latn"], "unknown language 'deu_Latn'"),
    ],
)
def test_bad_input_for_an_own_task_is_one_line(coarse_run, tiny_model_dirs, tmp_path, capsys, extra, message):
    from xlspt.cli import main

    args = ["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(coarse_run / "coarse.csv"),
            "--text-column", "sentence", "--label-column", "topic", "--language-column", "lang",
            "--split-column", "split", "--langs", "all", "--shots", "2", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- layouts found in review


def test_language_column_with_split_files_where_targets_have_a_test_split_only(tmp_path, coarse):
    english = coarse[(coarse["lang"] == "eng_Latn") & (coarse["split"] == "train")]
    english.drop(columns="split").to_csv(tmp_path / "train.csv", index=False)
    coarse[coarse["split"] == "test"].drop(columns="split").to_csv(tmp_path / "test.csv", index=False)
    data = TaskData.resolve(tmp_path, **_columns(language_column="lang"))
    assert data.languages() == ["eng_Latn", "fra_Latn", "swh_Latn"]
    assert len(data.split("fra_Latn", "test")) == _rows(coarse, "fra_Latn", "test")
    assert len(data.split("eng_Latn", "train")) + len(data.split("eng_Latn", "dev")) == 701  # dev carved from train
    with pytest.raises(xlspt.XlsptError, match="missing split: .* no train split for fra_Latn"):
        data.split("fra_Latn", "train")
    assert data.target_languages("52") == ["eng_Latn", "fra_Latn", "swh_Latn"]  # the default means "all" here


def test_unnamed_or_doubled_files_are_refused_not_half_read(tmp_path):
    folder = tmp_path / "eng_Latn"
    folder.mkdir()
    rows = pd.DataFrame({"text": [f"t{i}" for i in range(9)], "label": ["a", "b", "c"] * 3})
    rows.to_csv(folder / "part1.csv", index=False)
    rows.to_csv(folder / "part2.csv", index=False)
    with pytest.raises(xlspt.XlsptError, match="several data files none of which is named"):
        TaskData.resolve(tmp_path).split("eng_Latn", "train")
    (folder / "part2.csv").unlink()
    rows.to_csv(folder / "train.csv", index=False)
    with pytest.raises(xlspt.XlsptError, match="mixes split files with part1.csv"):
        TaskData.resolve(tmp_path).split("eng_Latn", "train")
    (folder / "part1.csv").unlink()
    rows.to_csv(folder / "train.tsv", sep="\t", index=False)
    with pytest.raises(xlspt.XlsptError, match="several files of the train split"):
        TaskData.resolve(tmp_path).split("eng_Latn", "train")


def test_folders_without_data_are_not_languages(tmp_path, coarse):
    for split in ("train", "dev", "test"):
        coarse[coarse["split"] == split].drop(columns="split").to_csv(tmp_path / f"{split}.csv", index=False)
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)  # what `xlspt run` wrote beside the data
    data = TaskData.resolve(tmp_path, **_columns(language_column="lang"))
    assert data.languages() == ["eng_Latn", "fra_Latn", "swh_Latn"]
    only_english = tmp_path / "en"
    only_english.mkdir()
    coarse[coarse["lang"] == "eng_Latn"].to_csv(only_english / "data.csv", index=False)
    (only_english / "hub").mkdir()
    assert TaskData.resolve(only_english, **_columns(split_column="split")).languages() == ["eng_Latn"]


def test_a_subset_of_sib200_topics_keeps_the_studys_order(tmp_path, sib200_dir):
    (tmp_path / "eng_Latn").mkdir()
    for split in ("train", "dev", "test"):
        frame = pd.read_csv(sib200_dir / "eng_Latn" / f"{split}.tsv", sep="\t", dtype=str, keep_default_na=False)
        frame[frame["category"].isin(["sports", "health", "politics"])].to_csv(
            tmp_path / "eng_Latn" / f"{split}.tsv", sep="\t", index=False)
    data = TaskData.resolve(tmp_path)
    assert data.labels() == ("politics", "health", "sports")
    assert len(sample_few_shot(data, "eng_Latn", 2, 0).train) == 6


def test_errors_name_the_line_of_the_file(tmp_path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(6)], "label": list("abcabc"), "split": ["dev"] * 3 + ["train"] * 3})
    frame.loc[4, "text"] = " "
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(xlspt.XlsptError, match="empty text in row 6"):  # the header is line 1
        TaskData.resolve(tmp_path / "d.csv", split_column="split").split("eng_Latn", "train")
    frame.drop(columns="split").to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    with pytest.raises(xlspt.XlsptError, match="empty text in row 5"):  # JSON Lines has no header
        TaskData.resolve(tmp_path / "d.jsonl").split("eng_Latn", "train")


def test_hub_class_labels_become_their_names_and_one_config_is_not_a_language(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "repo"
    repo.mkdir()
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    for split, n in (("train", 40), ("test", 10)):
        datasets.Dataset.from_dict({"text": [f"review {split} {i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
                                   features=features).to_parquet(str(repo / f"{split}.parquet"))
    data = TaskData.resolve(f"hf:{repo}")
    assert data.languages() == ["eng_Latn"]
    assert data.labels() == ("neg", "pos") and set(data.split("eng_Latn", "test")["label"]) == {"neg", "pos"}


def test_a_run_says_which_word_each_label_got_and_label_words_proposes_candidates(coarse_run, tiny_model_dirs, tmp_path,
                                                                                   capsys):
    from xlspt.cli import main

    data = ["--data", str(coarse_run / "coarse.csv"), "--text-column", "sentence", "--label-column", "topic",
            "--language-column", "lang", "--split-column", "split"]
    model = ["--model", str(tiny_model_dirs["gemma3"]), "--shots", "2", "--epochs", "1", "--prompt-length", "2", "--quiet"]
    assert main(["train", "--preset", "study", *model, *data, "--label-words", "leisure=fun", "--out", str(tmp_path / "p")]) == 0
    said = capsys.readouterr().err
    assert "label words proposed from the label names: science=' science', world=' world'" in said  # leisure was given
    sports = pd.read_csv(coarse_run / "coarse.csv").replace({"topic": {"leisure": "sports"}})  # a word the tiny model has
    sports.to_csv(tmp_path / "sports.csv", index=False)
    data[1] = str(tmp_path / "sports.csv")
    assert main(["label-words", *model, *data]) == 0
    captured = capsys.readouterr()
    assert "candidates proposed from the label names" in captured.err
    rows = [json.loads(line.split("%", 2)[2].strip()) for line in captured.out.strip().splitlines()]
    assert rows[0] == {"science": " science", "sports": " sports", "world": " world"}
    assert len(rows) >= 2 and any("|" in word for word in rows[1].values())  # several words per class
    assert "best on eng_Latn dev: --label-words" in captured.err


def test_neighbour_words_are_other_whole_words_near_in_the_embedding_table(tiny_gemma3):
    from xlspt.verbalizer import neighbour_words, proposed_candidates

    tokenizer, table = tiny_gemma3.tokenizer, tiny_gemma3.model.get_input_embeddings().weight.detach()
    near = neighbour_words(tokenizer, table, " science", 3)
    assert len(near) == 3 and all(w.startswith(" ") and w.strip().isalpha() and w.strip()[:4] != "scie" for w in near)
    first = tokenizer(" science", add_special_tokens=False)["input_ids"][0]
    cosine = torch.nn.functional.cosine_similarity(table, table[first].unsqueeze(0), dim=1)
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in near]
    assert cosine[ids].tolist() == sorted(cosine[ids].tolist(), reverse=True)  # nearest first
    sets = proposed_candidates(tokenizer, table, {"a": " science", "b": " world"})
    words = [w for s in sets[1:] for word in s.values() for w in word.split("|")]
    assert sets[0] == {"a": " science", "b": " world"} and len(set(sets[1]["a"].split("|")) & set(sets[1]["b"].split("|"))) == 0
    assert all(len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1 for w in words)
