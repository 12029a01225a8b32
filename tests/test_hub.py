"""The model card, the local and Hugging Face routes of pushing a prompt, and finding it again (no network)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest

from xlspt.errors import XlsptError
from xlspt.card import model_card
from xlspt.hub import LOCAL_HUB_ENV, push_folder, resolve_pretrained

CLASSES = ["geography", "science/technology", "entertainment", "politics", "health", "travel", "sports"]
METADATA = {
    "format_version": 1, "xlspt_version": "0.1.0", "model": "gemma-3-270m",
    "model_signature": {"model_type": "gemma3_text", "hidden_size": 640, "vocab_size": 262144, "num_hidden_layers": 18},
    "label_words": {c: f" {c.split('/')[0]}" for c in CLASSES} | {"sports": " sports| football"},
    "dtype": "float32",
    "prompt_config": {"length": 4, "reparam_hidden": None, "init_range": 0.5},
    "train_config": {"epochs": 20, "lr": 0.005, "seed": 3, "max_length": 128},
    "data": {"source": "../shared/sib200", "train_language": "eng_Latn", "shots_per_class": 8,
             "sampling_seed": 3, "train_index_ids": list(range(56))},
    "best_epoch": 17, "best_val_loss": 1.23456,
    "calibration": {"protocol": "unlabeled", "standardize": False, "name": "b:unlabeled(dev)"},
}
RESULTS = pd.DataFrame({"language": ["eng_Latn", "fra_Latn"], "accuracy": [0.8, 0.6543], "macro_f1": [0.79, 0.6],
                        "n": [204, 204], "protocol": ["b:unlabeled(dev)"] * 2})


def front_matter(card: str) -> str:
    assert card.startswith("---\n")
    return card.split("---\n")[1]


def test_card_of_a_single_prompt_with_results():
    card = model_card(METADATA, RESULTS, repo_id="me/topic-prompt")
    front = front_matter(card)
    assert "library_name: xlspt" in front and 'base_model: "google/gemma-3-270m"' in front
    assert "pipeline_tag: text-classification" in front and '- "Davlan/sib200"' in front and '- "eng"' in front
    assert all(f"- {tag}" in front for tag in ("xlspt", "soft-prompt", "prompt-tuning", "cross-lingual", "text-classification"))
    assert "license: gemma" in front and "Gemma Terms of Use" in card and "CC BY-SA 4.0" in card
    assert "text + prompt vectors + EOS" in card and "hidden size: 640" in card
    assert '| sports | `" sports"`, `" football"` |' in card and "log-sum-exp" in card
    assert "| science/technology |" in card
    assert "- training examples: 56" in card and "shots per class: 8 (sampling seed 3)" in card
    assert "best epoch: 17, best validation loss: 1.2346" in card and "length=4" in card
    assert "b:unlabeled(dev) (protocol b" in card
    assert "| fra_Latn | 65.4 | 60.0 | 204 | b:unlabeled(dev) |" in card
    assert "Mean accuracy over these 2 languages (b:unlabeled(dev)): 72.7%" in card
    assert 'from_pretrained("me/topic-prompt")' in card and "xlspt predict --prompt DIR" in card
    assert "# Soft prompt for `gemma-3-270m`" in card and "(4 vectors)" in card and "## Ensemble" not in card


def test_card_of_an_ensemble_reports_the_vote():
    metadata = copy.deepcopy(METADATA)
    metadata["ensemble"] = {"size": 3, "seeds": [0, 1, 2], "sampling": "per-member", "distinct_train_examples": 150, "members": []}
    results = pd.concat([RESULTS.assign(member="ensemble"), RESULTS.assign(member="0", accuracy=0.1)])
    card = model_card(metadata, results)
    assert "# Ensemble of 3 soft prompts" in card and "(4 vectors each)" in card and "seeds [0, 1, 2], per-member" in card
    assert "distinct training examples: 150" in card and "training examples: 56 per member" in card
    assert "| eng_Latn | 80.0 |" in card and "10.0" not in card  # members alone stay out of the card
    assert 'from_pretrained("<repo or dir>")' in card


def test_card_of_an_old_sidecar_without_results():
    card = model_card({"label_words": {"a|b": "x|y", "c": "z"}, "model": "/tmp/local-model"})
    front = front_matter(card)
    assert "base_model" not in front and "datasets" not in front and "language" not in front and "license" not in front
    assert '| a\\|b | `"x"`, `"y"` |' in card  # a pipe inside a cell is escaped
    assert "zero-shot" in card and "## Results" not in card and "CC BY-SA" not in card
    assert "Not recorded" in card and "best epoch: ?" in card
    assert model_card({}).startswith("---\n")
    old_protocol = model_card({"calibration": {"protocol": "content-free", "by_script": False}}, RESULTS.drop(columns="protocol"))
    assert "default calibration: a:content-free (protocol a" in old_protocol and "| 204 | a:content-free |" in old_protocol  # nothing at all still gives a card
    no_protocol = model_card({"label_words": {}}, RESULTS.drop(columns="protocol"))
    assert "| eng_Latn | 80.0 | 79.0 | 204 | zero-shot |" in no_protocol


@pytest.fixture
def prompt_dir(tmp_path) -> Path:
    folder = tmp_path / "run"
    (folder / "extra").mkdir(parents=True)
    (folder / "prompt.json").write_text(json.dumps(METADATA))
    (folder / "prompt.safetensors").write_bytes(b"v1")
    (folder / "extra" / "note.md").write_text("nested")
    return folder


def test_local_hub_round_trip_replaces_whole(prompt_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(LOCAL_HUB_ENV, raising=False)
    hub = tmp_path / "hub"
    dest = Path(push_folder(prompt_dir, "me/topic", hub=hub))
    assert dest == hub / "me" / "topic" and (dest / "prompt.safetensors").read_bytes() == b"v1"
    assert (dest / "extra" / "note.md").read_text() == "nested"
    (dest / "stale.txt").write_text("from an earlier push")
    (prompt_dir / "prompt.safetensors").write_bytes(b"v2")
    assert push_folder(prompt_dir, "me/topic", hub=hub) == str(dest)
    assert (dest / "prompt.safetensors").read_bytes() == b"v2" and not (dest / "stale.txt").exists()
    assert sorted(p.name for p in (hub / "me").iterdir()) == ["topic"]  # no temporary or old copies left
    assert resolve_pretrained("me/topic", hub=hub) == dest


def test_local_hub_from_the_environment(prompt_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(LOCAL_HUB_ENV, str(tmp_path / "envhub"))
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **_: pytest.fail("the Hub was asked"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **_: pytest.fail("the Hub was asked"))
    assert push_folder(prompt_dir, "topic") == str(tmp_path / "envhub" / "topic")
    assert resolve_pretrained("topic") == tmp_path / "envhub" / "topic"


@pytest.mark.parametrize("bad", ["", "a/b/c", "../x", "/abs", "x--y", "a..b", "-x", "x y", "o/" + "n" * 97])
def test_bad_repo_ids_are_refused(prompt_dir, tmp_path, bad):
    with pytest.raises(XlsptError, match="not a repository name"):
        push_folder(prompt_dir, bad, hub=tmp_path / "hub")
    assert not (tmp_path / "hub").exists()


def test_a_folder_without_a_prompt_is_refused(tmp_path):
    with pytest.raises(XlsptError, match="holds no saved prompt"):
        push_folder(tmp_path, "me/x", hub=tmp_path / "hub")


class FakeApi:
    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_hub_route_creates_and_uploads(prompt_dir, monkeypatch):
    monkeypatch.delenv(LOCAL_HUB_ENV, raising=False)
    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_folder(prompt_dir, "me/topic", token="hf_x", private=True, commit_message="v1")
    assert url == "https://huggingface.co/me/topic"
    assert FakeApi.calls == [
        ("init", {"token": "hf_x"}),
        ("create_repo", {"repo_id": "me/topic", "private": True, "exist_ok": True, "repo_type": "model"}),
        ("upload_folder", {"folder_path": str(prompt_dir), "repo_id": "me/topic", "commit_message": "v1", "repo_type": "model"}),
    ]


@pytest.mark.parametrize("error, fix", [(ConnectionError("unreachable"), "pass hub=DIR"),
                                        (ValueError("Invalid user token."), "hf auth login")])
def test_hub_failures_become_one_line(prompt_dir, monkeypatch, error, fix):
    monkeypatch.delenv(LOCAL_HUB_ENV, raising=False)

    class Failing(FakeApi):
        def create_repo(self, repo_id, **kwargs):
            raise error

    monkeypatch.setattr(huggingface_hub, "HfApi", Failing)
    with pytest.raises(XlsptError, match=fix) as info:
        push_folder(prompt_dir, "me/topic")
    assert "\n" not in str(info.value) and "me/topic" in str(info.value)


def test_resolve_a_directory_and_a_download(prompt_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(LOCAL_HUB_ENV, raising=False)
    assert resolve_pretrained(prompt_dir) == prompt_dir
    asked = {}

    def download(**kwargs):
        asked.update(kwargs)
        return str(prompt_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    assert resolve_pretrained("me/topic", revision="v1", token="t", hub=tmp_path / "emptyhub") == prompt_dir
    assert asked == {"repo_id": "me/topic", "revision": "v1", "token": "t",
                     "allow_patterns": ["*.json", "*.safetensors", "*.md"]}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **_: str(tmp_path / "run" / "extra"))
    with pytest.raises(XlsptError, match="holds no xlspt prompt"):
        resolve_pretrained("me/not-a-prompt")


def _not_found(**_):
    raise huggingface_hub.errors.RepositoryNotFoundError("404 Client Error: Repository Not Found")


@pytest.mark.parametrize("download", [_not_found, lambda **_: (_ for _ in ()).throw(OSError("offline"))])
def test_unknown_names_become_one_line(monkeypatch, download):
    monkeypatch.delenv(LOCAL_HUB_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    with pytest.raises(XlsptError, match=r"no prompt folder or Hub repository named 'me/nothing' \(\w+\): pass a directory"):
        resolve_pretrained("me/nothing")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **_: pytest.fail("a missing path went to the Hub"))
    with pytest.raises(XlsptError, match="save_pretrained"):
        resolve_pretrained("./runs/missing")
