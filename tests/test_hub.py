"""The model card, the local and Hugging Face routes of pushing a prompt, and finding it again (no network)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest
import torch
import yaml

from xlspt.errors import XlsptError
from xlspt.card import front_matter, model_card
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


def test_card_of_a_single_prompt_with_results():
    card = model_card(METADATA, RESULTS, repo_id="me/topic-prompt")
    front = front_matter(card)
    assert "library_name: xlspt" in front and 'base_model: "google/gemma-3-270m"' in front
    assert "pipeline_tag: text-classification" in front and '- "Davlan/sib200"' in front
    assert yaml.safe_load(front)["language"] == ["en", "fr"]  # the training language and those reported, ISO 639-1
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


# ---------------------------------------------------------------- what a shared prompt tells the world

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "coarse_topics.py"


def test_the_cards_languages_are_the_training_language_and_those_it_reports():
    results = pd.DataFrame({"language": ["eng_Latn", "fra_Latn", "swh_Latn", "zho_Hans", "zho_Hant", "tlh_Piqd", "Klingon"],
                            "accuracy": 0.5, "macro_f1": 0.5, "n": 10})
    members = pd.concat([results.assign(member="ensemble"), results.assign(member="0", language="yor_Latn")])
    for table in (results, members):  # the members' own rows are not reported, so their languages are not listed
        metadata = {**METADATA, "data": {**METADATA["data"], "train_language": "deu_Latn"}}
        front = yaml.safe_load(front_matter(model_card(metadata, table)))
        # ISO 639-1 where the language has one, else 639-3 (swh: Swahili; sw is the macrolanguage); no name that is no code
        assert front["language"] == ["de", "en", "fr", "swh", "zh", "tlh"]


@pytest.mark.parametrize("data, dataset, licence", [
    ({"source": "SIB-200 (release layout)", "checksum": "ab" * 32}, "Davlan/sib200", "SIB-200, licensed CC BY-SA 4.0"),
    ({"source": "hf:Davlan/sib200:eng_Latn", "checksum": "ab" * 32}, "Davlan/sib200", "CC BY-SA 4.0"),
    ({"source": "hf:someone/tickets", "checksum": "ab" * 32}, "someone/tickets", "huggingface.co/datasets/someone/tickets"),
    # a file of one's own named after SIB-200 is not SIB-200; a sidecar before 1.4 (no checksum) named SIB-200 by its folder
    ({"source": "sib200-coarse.csv", "checksum": "ab" * 32}, None, "`sib200-coarse.csv`, the trainer's own"),
    ({"source": "sib200"}, "Davlan/sib200", "CC BY-SA 4.0"),
])
def test_the_card_names_the_data_and_its_licence_beside_the_models(data, dataset, licence):
    card = model_card({**METADATA, "data": {**data, "train_language": "eng_Latn"}})
    assert yaml.safe_load(front_matter(card)).get("datasets") == ([dataset] if dataset else None)
    section = card[card.index("## Licence"):]
    assert "Gemma Terms of Use" in section and licence in section
    if "checksum" in data:
        assert f"(SHA-256 of the rows read: `{data['checksum']}`)" in card


def test_data_is_named_by_what_it_is(tmp_path, sib200_dir):
    from xlspt.data import TaskData

    sib200 = TaskData.resolve(sib200_dir)
    sib200.split("eng_Latn", "train")  # whether a folder is SIB-200 shows in its files
    assert sib200.source_name == "SIB-200 (release layout)"
    nested = tmp_path / "alice" / "tickets.csv"
    nested.parent.mkdir()
    nested.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    assert TaskData.resolve(nested).source_name == "tickets.csv" and TaskData.resolve(nested.parent).source_name == "alice"
    assert TaskData.resolve("hf:someone/tickets:en").source_name == "hf:someone/tickets:en"
    assert TaskData.resolve(f"hf:{nested.parent}").source_name == "hf:alice"  # a local folder read through datasets


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory, sib200_dir, tiny_model_dirs):
    """`xlspt run` on the README's own-task CSV kept deep in a user's folders, as the quickstart of a new user."""
    import importlib.util

    import torch

    from xlspt.cli import main

    spec = importlib.util.spec_from_file_location("coarse_topics", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("push")
    csv = root / "home-alice" / "clients" / "acme-corp" / "project-falcon" / "2024-q3" / "coarse-topics.csv"
    csv.parent.mkdir(parents=True)
    module.make(sib200_dir).to_csv(csv, index=False)
    threads = torch.get_num_threads()  # --threads sets the whole process's; give the other tests theirs back
    code = main(["run", "--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(csv), "--text-column", "sentence",
                 "--label-column", "topic", "--language-column", "lang", "--split-column", "split",
                 "--label-words", "leisure=fun", "--langs", "all", "--shots", "2", "--epochs", "1",
                 "--prompt-length", "2", "--threads", "1", "--device", "cpu", "--out", str(root / "runs" / "coarse"),
                 "--quiet"])
    torch.set_num_threads(threads)
    assert code == 0
    return csv, root / "runs" / "coarse"


def assert_clean(repo: Path, csv: Path) -> None:
    """No file of ``repo`` holds any component of the folder ``csv`` is in."""
    parts = [p for p in csv.parent.parts if p != csv.anchor]
    for path in repo.rglob("*"):
        content = path.read_bytes()
        leaked = [p for p in parts if p.encode() in content]
        assert not leaked, f"{path.name} holds {leaked}"


def test_a_push_holds_no_part_of_the_datas_path(nested_run, tmp_path, tiny_models):
    from xlspt.cli import main
    from xlspt.data.languages import hub_language_code
    from xlspt.classifiers import PromptClassifier

    csv, run = nested_run
    hub = tmp_path / "hub"
    assert main(["push", "--prompt", str(run), "--repo", "me/coarse-topics", "--hub", str(hub)]) == 0
    repo = hub / "me" / "coarse-topics"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "per_class.csv", "prompt.json", "prompt.safetensors",
                                                      "results.csv", "summary.txt"]  # never record.json
    assert_clean(repo, csv)
    sidecar = json.loads((repo / "prompt.json").read_text())
    assert sidecar["data"]["source"] == "coarse-topics.csv" and len(sidecar["data"]["checksum"]) == 64
    assert sidecar["model"] == Path(json.loads((run / "prompt.json").read_text())["model"]).name
    card = (repo / "README.md").read_text()
    reported = pd.read_csv(repo / "results.csv")["language"].tolist()
    assert yaml.safe_load(front_matter(card))["language"] == [hub_language_code(c) for c in reported] == ["en", "fr", "swh"]
    assert "- source: `coarse-topics.csv` (SHA-256 of the rows read" in card and "the trainer's own" in card
    pushed, local = (PromptClassifier.load(folder, tiny_models["gemma3"]) for folder in (repo, run))
    texts = ["The team won the final match.", "Le gouvernement a voté la loi."]
    assert torch.equal(pushed.scores(texts), local.scores(texts))
    from_python = Path(local.push_to_hub("me/from-python", results=pd.read_csv(run / "results.csv"), hub=hub))
    assert_clean(from_python, csv)
    assert (from_python / "README.md").read_text() == card.replace("me/coarse-topics", "me/from-python")


def test_a_dry_run_lists_the_upload_and_uploads_nothing(nested_run, tmp_path, monkeypatch, capsys):
    from xlspt.cli import main

    csv, run = nested_run
    hub = tmp_path / "hub"
    assert main(["push", "--prompt", str(run), "--repo", "me/coarse-topics", "--hub", str(hub), "--dry-run"]) == 0
    assert not hub.exists()
    out, err = capsys.readouterr()
    assert f"would upload 6 files to {hub / 'me' / 'coarse-topics'}:" in out and "nothing was uploaded" in err
    for name in ("README.md", "per_class.csv", "prompt.json", "prompt.safetensors", "results.csv", "summary.txt"):
        assert f"  {name} " in out
    assert 'language:\n  - "en"\n  - "fr"\n  - "swh"' in out and "library_name: xlspt" in out
    assert "acme-corp" not in out  # the listing shows what the Hub would get
    monkeypatch.delenv(LOCAL_HUB_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **_: pytest.fail("the Hub was asked"))
    assert main(["push", "--prompt", str(run), "--repo", "me/coarse-topics", "--dry-run"]) == 0
    assert "would upload 6 files to https://huggingface.co/me/coarse-topics:" in capsys.readouterr().out


def test_a_folder_of_the_last_release_pushed_again_comes_out_clean(nested_run, tmp_path, tiny_models):
    from xlspt.card import write_model_card
    from xlspt.classifiers import PromptClassifier
    from xlspt.pipeline import push

    csv, run = nested_run
    old = tmp_path / "old"
    shutil.copytree(run, old)
    sidecar = json.loads((old / "prompt.json").read_text())  # as 0.1.0 wrote it: format 1.3, the data's full path
    sidecar["format_version"] = "1.3"
    sidecar["data"] = {"source": str(csv), **{k: v for k, v in sidecar["data"].items() if k not in ("source", "checksum")}}
    (old / "prompt.json").write_text(json.dumps(sidecar, indent=2))
    write_model_card(old, sidecar, pd.read_csv(old / "results.csv"))
    assert str(csv) in (old / "README.md").read_text()
    hub = tmp_path / "hub"
    repo = Path(push(old, "me/coarse", hub=str(hub)))
    assert_clean(repo, csv)
    cleaned = json.loads((repo / "prompt.json").read_text())
    assert cleaned["data"]["source"] == "coarse-topics.csv" and cleaned["format_version"] == "1.3"
    assert {k: v for k, v in cleaned.items() if k not in ("model", "data")} == \
        {k: v for k, v in sidecar.items() if k not in ("model", "data")}
    texts = ["The team won the final match."]
    assert torch.equal(PromptClassifier.load(repo, tiny_models["gemma3"]).scores(texts),
                       PromptClassifier.load(run, tiny_models["gemma3"]).scores(texts))
    again = Path(push(repo, "me/again", hub=str(hub)))  # a downloaded push, shared again, is what was shared
    assert {p.name: p.read_bytes() for p in again.iterdir()} == {
        p.name: p.read_bytes().replace(b"me/coarse", b"me/again") for p in repo.iterdir()}
