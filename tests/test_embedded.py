"""The embedded Gemma 3 270M on real SIB-200 data (slow: minutes on a 2-core CPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

import xlspt
from xlspt.engine import NaiveEngine, encode_texts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma():
    return xlspt.load_model(dtype="float32")


@torch.no_grad()
def test_embedded_model_loads_with_its_tokenizer_and_verbalizer(gemma):
    assert gemma.model_type == "gemma3_text" and gemma.hidden_size == 640 and gemma.vocab_size == 262144
    verbalizer = xlspt.build_verbalizer(gemma)
    assert len(set(verbalizer.token_ids)) == 7
    ids = encode_texts(gemma, ["Bonjour"], 1)[0]
    assert ids[0] == gemma.tokenizer.bos_token_id


@torch.no_grad()
def test_prompt_rows_equal_to_token_embeddings_reproduce_the_tokens(gemma):
    ids = encode_texts(gemma, ["The match ended in a draw after extra time."], 2)[0]
    tokens = gemma.tokenizer(" The topic is", add_special_tokens=False)["input_ids"][:2]
    prompt = gemma.model.get_input_embeddings().weight[tokens].clone()
    hidden = NaiveEngine(gemma).readout_hidden([ids], prompt)
    expected = gemma.adapter.base_model(gemma.model)(input_ids=torch.tensor([ids + tokens])).last_hidden_state[:, -1]
    torch.testing.assert_close(hidden, expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_packed_prompts_give_each_prompts_own_pass(gemma, data):
    """Several prompts packed after each text read out what each prompt's own full pass does."""
    from xlspt.engine import CachedTextEngine

    texts = data.split("yor_Latn", "test")["text"].tolist()[:12]  # long texts, different lengths
    ids = encode_texts(gemma, texts, 3)
    prompts = torch.empty(3, 3, gemma.hidden_size).uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
    cached = CachedTextEngine(gemma)
    packed = cached.readout_hidden_many(cached.encode_batch(ids), prompts)
    naive = NaiveEngine(gemma)
    for p in range(3):
        torch.testing.assert_close(packed[p], naive.readout_hidden(ids, prompts[p]), rtol=1e-4, atol=1e-4)


def test_a_trained_prompt_classifies_english_well_above_chance(gemma, full_data, tmp_path):
    data = full_data  # the bar is set on the whole English test split
    clf = xlspt.PromptClassifier.train(
        gemma, data, shots=8, prompt=xlspt.PromptConfig(length=4), training=xlspt.TrainConfig(epochs=8, seed=0),
        progress=False, recipe="study",
    )
    results = clf.evaluate(data, ["eng_Latn"], progress=False)
    accuracy = float(results["accuracy"].iloc[0])
    assert accuracy >= 0.30, f"English accuracy {accuracy:.3f}; chance is 0.143"
    clf.save(tmp_path)
    again = xlspt.PromptClassifier.load(tmp_path, gemma).evaluate(data, ["eng_Latn"], progress=False)
    assert again.equals(results)


def test_an_own_csv_task_trains_predicts_and_travels_through_a_local_hub(gemma, full_sib200_dir, tmp_path):
    """The README's own-task example on the embedded model: three coarse classes, own column names."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("coarse_topics", Path(__file__).resolve().parents[1] / "examples" / "coarse_topics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(full_sib200_dir).to_csv(tmp_path / "coarse.csv", index=False)  # the bar is set on the full data
    data = xlspt.TaskData.resolve(tmp_path / "coarse.csv", text_column="sentence", label_column="topic",
                                  language_column="lang", split_column="split")
    clf = xlspt.PromptClassifier.train(gemma, data, shots=8, progress=False, recipe="study")  # the defaults: 20 epochs
    assert clf.verbalizer.as_dict() == {"leisure": " leisure", "science": " science", "world": " world"}
    results = clf.evaluate(data, ["eng_Latn", "fra_Latn", "swh_Latn"], progress=False)
    assert results.loc[0, "accuracy"] >= 0.45, f"English accuracy {results.loc[0, 'accuracy']:.3f}; chance is 0.333"
    texts = data.split("fra_Latn", "test")["text"].tolist()[:8]
    scored = clf.classify(texts, top_k=3)
    assert scored["label"].tolist() == clf.predict(texts)
    assert all(abs(sum(t["probability"] for t in row) - 1) < 1e-4 for row in scored["top_k"])
    clf.push_to_hub("me/coarse", results=results, hub=tmp_path / "hub")
    again = xlspt.PromptClassifier.from_pretrained("me/coarse", gemma, hub=tmp_path / "hub")
    assert again.classify(texts, top_k=3).equals(scored)
    assert "| swh_Latn |" in (tmp_path / "hub" / "me" / "coarse" / "README.md").read_text()


def test_a_run_logged_to_a_file_holds_lines_not_bar_frames(sib200_dir, tmp_path):
    """Output to a file, on an empty cache (so the GGUF conversion runs too): no carriage return, no bar."""
    env = {**os.environ, "XLSPT_CACHE": str(tmp_path / "cache")}
    log = tmp_path / "run.log"
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "xlspt.cli", "run", "--preset", "study", "--data", str(sib200_dir), "--langs", "eng_Latn,fra_Latn",
             "--shots", "1", "--epochs", "1", "--out", str(tmp_path / "run")],
            stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    assert "Converting" in text and "Converted" in text  # the conversion ran, and said so in lines
    assert "\r" not in text, [line for line in text.split("\n") if "\r" in line][:3]
    assert not re.search(r"\d+%\|", text), text  # tqdm's "NN%|███" frames
    assert "French" in text  # the results table


def test_the_python_quickstart_example_runs_as_a_user_runs_it(sib200_dir, tmp_path):
    """examples/quickstart.py in a process of its own (one epoch: the example's code path, not its accuracy)."""
    import json
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    done = subprocess.run([sys.executable, str(example), str(sib200_dir), str(tmp_path / "prompt"), "1"],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "French" in done.stdout and "Swahili" in done.stdout  # the results table
    assert "top_k" in done.stdout and "Bunge limepitisha" in done.stdout  # the reloaded classifier's answers
    sidecar = json.loads((tmp_path / "prompt" / "prompt.json").read_text(encoding="utf-8"))
    assert len(sidecar["ensemble"]["seeds"]) == 8 and sidecar["calibration"]["protocol"] == "content-free"
