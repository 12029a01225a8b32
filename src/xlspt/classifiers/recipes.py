"""Recipes: named settings for a prompt classifier, the product's best measured one the default.

A recipe is a YAML file beside this module (``recipes/<name>.yaml``) whose keys are run settings
(:class:`~xlspt.study.RunConfig` fields: ``shots``, ``reparam_hidden``, ``ensemble``,
``calibration``...). ``xlspt run`` and ``xlspt train`` without ``--preset``, and
:meth:`PromptClassifier.train <xlspt.classifiers.PromptClassifier.train>` without ``recipe=``,
use :data:`DEFAULT_RECIPE`; ``study`` is the study's single prompt. The same files are the
``--preset`` of ``xlspt run``, ``train`` and ``sweep``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import XlsptError

#: The recipes, the default first.
RECIPES = ("quality", "quality-lora", "quality-unlabeled", "study")
#: What a user gets without asking: the recipe the development languages chose for protocol a (no target data).
DEFAULT_RECIPE = "quality"
#: The study's single prompt.
STUDY_RECIPE = "study"

#: What each recipe is and what it costs, measured (benchmarks/README.md): the first line of a run says it.
SUMMARIES = {
    "quality": "8 reparameterized prompts voting, content-free calibration (protocol a: no target-language data); "
               "about 530 s for the 52 SIB-200 languages on 2 CPU cores, 8x the study prompt's training",
    "quality-lora": "4 reparameterized 32-shot prompts, each with its own low-rank adapters on the frozen model, voting; "
                    "content-free calibration (protocol a); its 4 members train in 27-35 min on 2 CPU cores (about 10x "
                    "quality) and score the 52 SIB-200 languages in 18-30 min",
    "quality-unlabeled": "8 reparameterized 32-shot prompts voting, standardized on each language's unlabeled texts "
                         "(protocol b); its 8 prompts train in about 430 s on 2 CPU cores",
    "study": "the study's single 4-vector prompt, zero-shot",
}


@dataclass(frozen=True)
class Recipe:
    """A recipe's name and its settings (run config field -> value)."""

    name: str
    values: dict[str, Any]

    @property
    def prompts(self) -> int:
        return int(self.values.get("ensemble", 1))

    def arguments(self) -> dict[str, Any]:
        """The recipe as :meth:`PromptClassifier.train <xlspt.classifiers.PromptClassifier.train>`'s arguments
        (``shots``, ``prompt``, ``ensemble``, ``calibration``, and ``lora`` for a recipe of method lora: the
        adapters' defaults); settings it leaves out keep their defaults."""
        from ..calibration import CalibrationConfig
        from ..lora import LoraConfig
        from ..soft_prompt import PromptConfig

        known = {"shots", "prompt_length", "reparam_hidden", "ensemble", "calibration", "standardize", "prior",
                 "content_free_script", "method"}
        if set(self.values) - known:
            raise XlsptError(f"recipe {self.name}: the Python API does not take {', '.join(sorted(set(self.values) - known))}")
        v = self.values
        prompt = {"length": v["prompt_length"]} if "prompt_length" in v else {}
        if v.get("reparam_hidden"):  # 0: no reparameterization
            prompt["reparam_hidden"] = v["reparam_hidden"]
        names = {"calibration": "protocol", "standardize": "standardize", "prior": "prior", "content_free_script": "by_script"}
        calibration = {names[k]: v[k] for k in names if k in v}
        out = {k: v[k] for k in ("shots", "ensemble") if k in v}
        if v.get("method", "prompt") not in ("prompt", "lora"):
            raise XlsptError(f"recipe {self.name}: method {v['method']} is not a prompt classifier's (prompt or lora)")
        if v.get("method") == "lora":
            out["lora"] = LoraConfig()
        return {**out, "prompt": PromptConfig(**prompt), "calibration": CalibrationConfig(**calibration)}

    def describe(self, *, default: bool = False) -> str:
        """One line: the recipe, its number of prompts and its measured cost."""
        how = " (the default; --preset study for the study's single prompt)" if default else ""
        return f"recipe {self.name}{how}: {SUMMARIES[self.name]}"


def recipe_path(name: str) -> Path:
    if name not in RECIPES:
        raise XlsptError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
    return Path(str(files("xlspt.classifiers").joinpath("recipes", f"{name}.yaml")))


@lru_cache(maxsize=None)
def _values(name: str) -> tuple[tuple[str, Any], ...]:
    import yaml

    values = yaml.safe_load(recipe_path(name).read_text(encoding="utf-8")) or {}
    return tuple(values.items())


def recipe(name: str) -> Recipe:
    """The recipe ``name`` (one of :data:`RECIPES`)."""
    return Recipe(name, dict(_values(name)))
