"""A run's settings: checked once through the configs they feed, numbers as people write them,
the environment's data folder read in one place, and run ids pinned to the published ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlspt.calibration import CalibrationConfig, Protocol
from xlspt.data.task import DATA_ENV, DataConfig, TaskData
from xlspt.engine.options import Engine, ReadoutConfig, SpecialTokens
from xlspt.errors import ConfigError, XlsptError
from xlspt.soft_prompt import PromptConfig
from xlspt.study.config import RunConfig
from xlspt.study.spec import load_spec, preset_path
from xlspt.train import TrainConfig

RUN_IDS = Path(__file__).parent / "fixtures" / "run_ids.json"
PINNED = json.loads(RUN_IDS.read_text())
#: The data checksum the pinned ids were computed with (ids name the data by the checksum of the rows a run reads).
PINNED_DATA = PINNED["data_checksum"]


def _preset_ids(preset: str, overrides: dict | None) -> list[dict]:
    """What tests/fixtures/run_ids.json holds for ``preset``, computed with this code."""
    rows = []
    for c in load_spec(preset_path(preset), overrides).runs:
        languages = c.langs.split(",") if "," in c.langs else [c.langs]
        rows.append({"config": c.short_name(),
                     **{dtype: c.run_id(dtype=dtype, languages=languages, data_checksum=PINNED_DATA)
                        for dtype in ("float32", "bfloat16")}})
    return rows


def _pinned(preset: str) -> list[dict]:
    return [{k: row[k] for k in ("config", "float32", "bfloat16")} for row in PINNED["presets"][preset]]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- pinned run ids


@pytest.mark.parametrize("preset", PINNED["presets"])
def test_preset_run_ids_are_the_published_ones(preset, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert _preset_ids(preset, {"data": "/srv/sib200"}) == _pinned(preset)


@pytest.mark.parametrize("preset", PINNED["presets"])
def test_where_the_data_lies_or_how_it_is_named_leaves_ids_alone(preset, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, "/srv/sib200")
    assert _preset_ids(preset, None) == _pinned(preset)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert _preset_ids(preset, None) == _pinned(preset)
    monkeypatch.delenv(DATA_ENV)
    assert _preset_ids(preset, {"data": "hf:Davlan/sib200"}) == _pinned(preset)


def test_the_first_rounds_quality_presets_keep_their_ids(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    for config, row in zip((dict(shots=32, ensemble=8, calibration="content-free"),
                            dict(shots=32, ensemble=8, calibration="unlabeled", standardize=True)), PINNED["first_round"]):
        first = RunConfig(**config)  # the presets before the development languages chose
        assert first.short_name() == row["config"]
        assert [first.run_id(dtype=dtype, languages=["52"], data_checksum=PINNED_DATA) for dtype in ("float32", "bfloat16")] \
            == [row["float32"], row["bfloat16"]]


def test_environment_data_is_the_config_s_data_and_other_content_another_run(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, "/srv/sib200")
    from_environment = RunConfig(dtype="float32", langs="eng_Latn")
    assert from_environment.data == "/srv/sib200" and from_environment.data_config().source == "/srv/sib200"
    assert from_environment == RunConfig(dtype="float32", langs="eng_Latn", data="/srv/sib200")
    assert from_environment.replace(data="hf:Davlan/sib200").data == "hf:Davlan/sib200"  # named data wins
    ids = {from_environment.run_id(data_checksum=checksum) for checksum in ("0" * 64, "1" + "0" * 63)}
    assert len(ids) == 2
    canonical = from_environment.canonical(dtype="float32", data_checksum="0" * 64)
    assert canonical["data"] == "sha256:" + "0" * 64 and "/srv" not in json.dumps(canonical)


def test_without_data_or_environment_the_hub_dataset_is_read(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    config = RunConfig(dtype="float32", langs="eng_Latn")
    assert config.data is None and config.canonical()["data"] is None  # not an id: no checksum given
    monkeypatch.setenv(DATA_ENV, "")  # set but empty: unset
    assert RunConfig(dtype="float32", langs="eng_Latn") == config


def test_the_step_budget_the_loss_and_patience_leave_earlier_run_ids_as_they_were(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    config = RunConfig(dtype="float32", langs="eng_Latn", min_steps=0, loss="vocabulary", patience=0)

    def run_id(c: RunConfig) -> str:
        return c.run_id(data_checksum=PINNED_DATA)

    assert run_id(config) == run_id(RunConfig(dtype="float32", langs="eng_Latn"))
    assert not {"min_steps", "loss", "patience"} & set(config.canonical())
    budget, words, patient = config.replace(min_steps=200), config.replace(loss="label-words"), config.replace(patience=3)
    assert len({run_id(config), run_id(budget), run_id(words), run_id(patient)}) == 4
    assert budget.train_config().min_steps == 200 and words.train_config().loss == "label-words"
    assert patient.train_config().patience == 3 and patient.short_name().endswith("patience3")
    assert budget.short_name().endswith("min200steps") and words.short_name().endswith("label-words-loss")
    with pytest.raises(ConfigError) as error:
        RunConfig(loss="hinge")
    assert error.value.field == "loss" and "vocabulary, label-words" in error.value.problem


def test_the_environment_is_read_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert DataConfig().resolved().source == str(tmp_path)
    assert DataConfig(source="hf:someone/data").resolved().source == "hf:someone/data"
    assert TaskData.resolve().root == tmp_path and TaskData.resolve(DataConfig()).root == tmp_path
    assert TaskData.resolve("").hub_dataset == "Davlan/sib200"  # an empty path is the Hub, as before
    monkeypatch.delenv(DATA_ENV)
    assert DataConfig().resolved() == DataConfig() and TaskData.resolve().hub_dataset == "Davlan/sib200"


# ---------------------------------------------------------------- numbers as people write them


def test_a_number_written_as_yaml_1_1_reads_it_is_a_number(tmp_path):
    written = load_spec(_write(tmp_path / "s.yaml", "lr: [5e-3, 1e-2]\nmodel_lr: 1e-4\nfreeze: false\nshots: '8'\n"))
    assert [run.lr for run in written.runs] == [0.005, 0.01] and {run.model_lr for run in written.runs} == {1e-4}
    assert {run.shots for run in written.runs} == {8}
    plain = load_spec(_write(tmp_path / "p.yaml", "lr: [0.005, 0.01]\nmodel_lr: 0.0001\nfreeze: false\nshots: 8\n"))
    assert [r.run_id(dtype="float32", data_checksum=PINNED_DATA) for r in written.runs] == [r.run_id(dtype="float32", data_checksum=PINNED_DATA) for r in plain.runs]
    assert written.runs[0].train_config().lr == 0.005 and written.runs[0].train_config().model_lr == 1e-4
    # values given the way flags and overrides give them
    overridden = load_spec(_write(tmp_path / "o.yaml", "shots: 8\n"), {"epochs": "3", "lr": "2e-3", "model_lr": "reference"})
    assert (overridden.runs[0].epochs, overridden.runs[0].lr, overridden.runs[0].model_lr) == (3, 0.002, "reference")
    assert RunConfig(lr="5e-3", prompt_length="4") == RunConfig(lr=0.005, prompt_length=4)


@pytest.mark.parametrize(
    "text,message",
    [
        ("lr: yes\n", "line 1: lr: must be a number (got True)"),
        ("lr: fast\n", "line 1: lr: must be a number (got 'fast')"),
        ("seed: 0\nlr: [1.0e-3, '']\n", "line 2: lr: must be a number (got '')"),
        ("model_lr: fast\n", "line 1: model_lr: must be a number or 'reference' (got 'fast')"),
        ("model_lr: true\n", "line 1: model_lr: must be a number or 'reference' (got True)"),
        ("shots: eight\n", "line 1: shots: must be a whole number (got 'eight')"),
        ("shots: no\n", "line 1: shots: must be a whole number (got False)"),
        ("epochs: 1e3\n", "line 1: epochs: must be a whole number (got '1e3')"),
        ("epochs: '2.5'\n", "line 1: epochs: must be a whole number (got '2.5')"),
        ("epochs: 2.0\n", "line 1: epochs: must be a whole number (got 2.0)"),
        ("lr: -1e-3\n", "line 1: lr: must be positive (got -0.001)"),
        ("epochs: '0'\n", "line 1: epochs: must be at least 1 (got 0)"),
    ],
)
def test_booleans_and_words_are_still_not_numbers(tmp_path, text, message):
    with pytest.raises(XlsptError) as info:
        load_spec(_write(tmp_path / "bad.yaml", text))
    assert str(info.value) == f"{tmp_path / 'bad.yaml'} {message}"


# ---------------------------------------------------------------- nested configs, checked once


def test_the_nested_configs_are_built_once_from_the_flat_fields():
    config = RunConfig(prompt_length=8, reparam_hidden=16, epochs=3, lr=1e-3, batch_size=4, seed=2, max_length=64,
                       freeze=False, model_lr="reference", engine="naive", special_tokens="reference",
                       text_column="sentence", label_column="topic", train_lang="deu_Latn",
                       calibration="unlabeled", standardize=True, langs="eng_Latn")
    assert config.prompt_config() == PromptConfig(length=8, reparam_hidden=16)
    assert config.train_config() == TrainConfig(epochs=3, lr=1e-3, batch_size=4, seed=2, max_length=64, freeze_model=False,
                                                model_lr=1e-3, engine="naive", special_tokens="reference")
    assert config.readout_config() == ReadoutConfig(max_length=64, special_tokens=SpecialTokens.REFERENCE, engine=Engine.NAIVE)
    assert config.data_config().text_column == "sentence" and config.data_config().language == "deu_Latn"
    assert config.calibration_config() == CalibrationConfig(Protocol.UNLABELED, standardize=True)
    assert RunConfig().prompt_config().reparam_hidden is None  # 0 is off
    changed = config.train_config()
    changed.epochs = 99  # a copy: the run's own stays as it was
    assert config.train_config().epochs == 3 and config.prompt_config() is not config.prompt_config()
    # the nested configs are no fields: not in the canonical form, equality or the hash
    assert "_train" not in config.canonical() and config == config.replace() and hash(config) == hash(config.replace())


def test_a_nested_config_s_error_names_the_run_config_s_field():
    with pytest.raises(ConfigError) as info:
        PromptConfig(length=0)
    assert (info.value.field, info.value.problem) == ("length", "must be at least 1 (got 0)")
    with pytest.raises(ConfigError) as info:
        RunConfig(prompt_length=0)
    assert (info.value.field, info.value.problem) == ("prompt_length", "must be at least 1 (got 0)")
    with pytest.raises(ConfigError) as info:
        CalibrationConfig("zero-shot", standardize=True)
    assert "use protocol unlabeled" in info.value.problem
    with pytest.raises(ConfigError) as info:
        RunConfig(standardize=True)
    assert "use calibration unlabeled" in info.value.problem  # the run config's own word


@pytest.mark.parametrize(
    "values,message",
    [  # the messages of the code before the nested configs checked their own fields
        ({"shots": 0}, "shots: must be at least 1 (got 0)"),
        ({"prompt_length": -3}, "prompt_length: must be at least 1 (got -3)"),
        ({"prompt_length": 126}, "prompt_length: 126 leaves no room for text within max_length 128: use a prompt "
                                 "length below 126 or a larger max_length"),
        ({"max_length": 10, "prompt_length": 8}, "prompt_length: 8 leaves no room for text within max_length 10: use a "
                                                 "prompt length below 8 or a larger max_length"),
        ({"reparam_hidden": -1}, "reparam_hidden: must be at least 0 (got -1)"),
        ({"epochs": 0}, "epochs: must be at least 1 (got 0)"),
        ({"lr": 0}, "lr: must be positive (got 0.0)"),
        ({"lr": float("nan")}, "lr: must be positive (got nan)"),
        ({"model_lr": -1}, "model_lr: must be positive or 'reference' (got -1.0)"),
        ({"model_lr": None}, "model_lr: must be a number or 'reference' (got None)"),
        ({"batch_size": 0}, "batch_size: must be at least 1 (got 0)"),
        ({"max_length": 7}, "max_length: must be at least 8 (got 7)"),
        ({"seed": -1}, "seed: must be at least 0 (got -1)"),
        ({"seed": 1.0}, "seed: must be a whole number (got 1.0)"),
        ({"engine": "cached", "freeze": False}, "engine: cached needs a frozen model: use engine naive or auto with freeze off"),
        ({"engine": 3}, "engine: must be one of auto, cached, naive (got 3)"),
        ({"special_tokens": "none"}, "special_tokens: must be one of tokenizer, reference (got 'none')"),
        ({"dtype": "half"}, "dtype: must be one of auto, float32, bfloat16 (got 'half')"),
        ({"calibration": "prior"}, "calibration: must be one of zero-shot, content-free, unlabeled, batch (got 'prior')"),
        ({"method": "svm"}, "method: must be one of prompt, probe, lora (got 'svm')"),
        ({"save_model": True}, "save_model: only applies with freeze off (a frozen model does not change)"),
        ({"freeze": 1}, "freeze: must be true or false (got 1)"),
        ({"ensemble": 0}, "ensemble: must be at least 1 (got 0)"),
        ({"ensemble": 2, "freeze": False}, "ensemble: needs a frozen model (each member would train its own copy of the weights)"),
        ({"standardize": True, "calibration": "content-free"},
         "standardize: needs unlabeled target text: use calibration unlabeled or batch (got content-free)"),
        ({"method": "probe", "calibration": "batch"},
         "method: probe is the plain baseline: use it without ensemble, calibration or --no-freeze"),
        ({"text_column": ""}, "text_column: must be a non-empty string (got '')"),
        ({"text_column": "  "}, "text_column: must name a column"),
        ({"language_column": "lang", "split_column": "lang"}, "split_column: is the language column too: name two different columns"),
        ({"langs": " "}, "langs: is empty: use 52, dev, held-out, all, or codes such as eng_Latn,fra_Latn"),
        ({"langs": ["eng_Latn", ""]}, "langs: must be a non-empty list of language codes"),
        ({"langs": 52}, "langs: must be 52, all, or language codes (got 52)"),
        ({"data": ""}, "data: must be a non-empty string (got '')"),
    ],
)
def test_error_messages_are_the_ones_users_saw(values, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping(values)
    assert str(info.value) == message
