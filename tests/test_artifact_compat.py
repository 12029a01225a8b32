"""Artifacts written by the last release before typed sidecars (commit 66d20ae's code) still load, and score the same.

``tests/fixtures/artifacts`` holds a reparameterized prompt, a calibrated ensemble with its reference statistics and
a probe, all on the tiny Gemma 3 model, with the scores they gave when saved (``make_fixtures.py`` wrote them).
"""

from __future__ import annotations

import json
import tempfile
import shutil
from pathlib import Path

import pytest
import torch

import xlspt
from xlspt.classifiers import ProbeClassifier, PromptClassifier, load_classifier, saved_method
from xlspt.sidecar import FORMAT_VERSION, ProbeSidecar, PromptSidecar

STORED = Path(__file__).parent / "fixtures" / "artifacts"
EXPECTED = json.loads((STORED / "expected.json").read_text(encoding="utf-8"))


def _materialize(root: Path) -> Path:
    """The artifacts as the last release wrote them: the repository keeps no binary weights, so each
    ``*.safetensors`` is kept as ``*.safetensors.json`` (tensors and header metadata) and written back here,
    byte for byte (the sidecars' checksums prove it)."""
    from safetensors.torch import save

    shutil.copytree(STORED, root, ignore=shutil.ignore_patterns("*.safetensors.json"))
    for kept in STORED.glob("*/*.safetensors.json"):
        stored = json.loads(kept.read_text(encoding="utf-8"))
        tensors = {k: torch.tensor(v["values"], dtype=torch.float32).reshape(v["shape"]) for k, v in stored["tensors"].items()}
        (root / kept.parent.name / kept.name.removesuffix(".json")).write_bytes(save(tensors, metadata=stored["metadata"]))
    return root


FIXTURES = _materialize(Path(tempfile.mkdtemp(prefix="xlspt-artifacts-")) / "artifacts")


@pytest.mark.parametrize("name, kind, texts", [
    ("prompt", PromptClassifier, EXPECTED["texts"]),
    ("ensemble", PromptClassifier, EXPECTED["texts"] * 8),
    ("probe", ProbeClassifier, EXPECTED["texts"]),
])
def test_artifacts_of_the_last_release_load_through_the_registry_and_score_the_same(tiny_models, name, kind, texts):
    clf = load_classifier(FIXTURES / name, tiny_models["gemma3"])
    assert isinstance(clf, kind) and saved_method(FIXTURES / name).value == kind.method.value
    assert torch.allclose(clf.scores(texts), torch.tensor(EXPECTED[name]), atol=1e-5)


def test_old_sidecars_read_as_typed_configs_with_their_fields_in_place():
    prompt = PromptSidecar.read(FIXTURES / "prompt" / "prompt.json")
    assert prompt.format_version == "1.2" and prompt.members[0].prompt_config.reparam_hidden == 8
    assert prompt.readout.max_length == 128 and prompt.training.train_config.seed == 3  # under train_config in 1.2
    ensemble = PromptSidecar.read(FIXTURES / "ensemble" / "prompt.json")
    assert ensemble.is_ensemble and [m.train_config.seed for m in ensemble.members] == [5, 6]
    assert ensemble.calibration.name == "b:batch+standardize"
    probe = ProbeSidecar.read(FIXTURES / "probe" / "probe.json")
    assert probe.format_version == "1.0" and probe.sha256 is None and probe.C == 0.01
    assert probe.readout.max_length == 128  # at the top of a probe's sidecar before 1.3


@pytest.mark.parametrize("name", ["prompt", "ensemble", "probe"])
def test_saved_again_an_old_artifact_gets_the_current_format_and_checksum(tiny_models, tmp_path, name):
    clf = load_classifier(FIXTURES / name, tiny_models["gemma3"])
    clf.save(tmp_path)
    sidecar = json.loads((tmp_path / clf.metadata.sidecar_file).read_text(encoding="utf-8"))
    assert sidecar["format_version"] == FORMAT_VERSION and sidecar["method"] == clf.method.value
    assert sidecar[clf.metadata.checksum_key] == xlspt.sidecar.sha256_file(tmp_path / clf.metadata.weights_file)
    assert set(sidecar["readout"]) == {"max_length", "special_tokens"}
    again = load_classifier(tmp_path, tiny_models["gemma3"])
    assert torch.equal(again.scores(EXPECTED["texts"] * 8), clf.scores(EXPECTED["texts"] * 8))


@pytest.mark.parametrize("name, texts", [("prompt", EXPECTED["texts"]), ("ensemble", EXPECTED["texts"] * 8)])
def test_pushed_an_old_artifact_names_its_data_and_model_without_their_paths_and_scores_the_same(tiny_models, tmp_path,
                                                                                                 name, texts):
    from xlspt.pipeline import push

    repo = Path(push(FIXTURES / name, f"me/{name}", hub=str(tmp_path / "hub")))
    sidecar = json.loads((repo / "prompt.json").read_text(encoding="utf-8"))
    members = sidecar.get("ensemble", {}).get("members", [])
    assert [s["data"]["source"] for s in [sidecar, *members]] == ["sib200"] * (1 + len(members))  # was /work/shared/sib200
    assert sidecar["model"] == "tmpiwws0xrj" and sidecar["format_version"] == "1.2"  # was /tmp/tmpiwws0xrj
    assert not any(b"/tmp/" in p.read_bytes() or b"/work/" in p.read_bytes() for p in repo.iterdir())
    assert "Davlan/sib200" in (repo / "README.md").read_text(encoding="utf-8")  # still known as SIB-200
    clf = load_classifier(repo, tiny_models["gemma3"])
    assert torch.allclose(clf.scores(texts), torch.tensor(EXPECTED[name]), atol=1e-5)


def test_a_probe_whose_weights_changed_is_refused(tiny_models, tmp_path):
    shutil.copytree(FIXTURES / "probe", tmp_path / "probe")
    load_classifier(tmp_path / "probe", tiny_models["gemma3"]).save(tmp_path / "probe")  # now with a checksum
    data = bytearray((tmp_path / "probe" / "probe.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "probe" / "probe.safetensors").write_bytes(bytes(data))
    with pytest.raises(xlspt.XlsptError, match="does not match the checksum"):
        load_classifier(tmp_path / "probe", tiny_models["gemma3"])
