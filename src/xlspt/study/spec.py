"""Sweep specs: a YAML mapping of run-config fields to a value or a list of values.

The product of the lists is the set of runs::

    model: gemma-3-270m
    shots: [8, 32]
    prompt_length: [1, 4, 16]
    reparam_hidden: [0, 200]
    freeze: [true, false]
    seed: [0, 1, 2, 3]
    langs: "52"

``langs`` and ``label_words`` are values, not axes: a list of language codes is the target
languages of every run. A spec is checked whole before anything runs: an unknown key, an
empty list, a value of the wrong type or broken YAML is refused with one line naming the key
and its line in the file. A number is a number however YAML reads it (YAML 1.1 reads ``5e-3``
as a string).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..classifiers.recipes import RECIPES, recipe_path
from ..errors import ConfigError, XlsptError
from .config import RunConfig

#: Fields whose list value is one value (not a sweep axis).
LIST_VALUED = ("langs",)
#: Fields whose values are only valid together with others (checked on the expanded runs).
CROSS_CHECKED = ("engine", "save_model", "standardize", "prior", "content_free_script")
#: Presets that are one configuration (for ``xlspt run --preset`` and ``xlspt train --preset``): the recipes.
RUN_PRESETS = RECIPES
PRESETS = ("smoke", "gemma", "gemma-shots", "gemma-lora", "paper", *RUN_PRESETS)


@dataclass(frozen=True)
class SweepSpec:
    """A validated spec: its source, the values per key and the runs it expands to."""

    source: str
    values: dict[str, Any]
    runs: tuple[RunConfig, ...]

    @property
    def axes(self) -> dict[str, list]:
        """The keys that vary, with their values."""
        return {k: v for k, v in self.values.items() if isinstance(v, list) and k not in LIST_VALUED}


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise XlsptError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    if name in RECIPES:
        return recipe_path(name)
    return Path(str(files("xlspt.study").joinpath("presets", f"{name}.yaml")))


def run_preset(name: str) -> RunConfig:
    """The one configuration of a single-run preset (``quality``, ...)."""
    spec = load_spec(preset_path(name))
    if len(spec.runs) != 1:
        raise XlsptError(f"preset {name!r} is a grid of {len(spec.runs)} runs: use `xlspt sweep --preset {name}`")
    return spec.runs[0]


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Read, check and expand a spec file; ``overrides`` (field -> value) replace its values."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise XlsptError(f"sweep spec {path} does not exist: pass a YAML file (or --preset smoke|gemma|paper)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise XlsptError(f"cannot read sweep spec {path} ({exc.__class__.__name__}): pass a UTF-8 YAML file") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise XlsptError(f"{path}{where}: broken YAML ({problem}): fix the file") from None
    if not isinstance(data, dict) or not data:
        raise XlsptError(f"{path}: a sweep spec is a YAML mapping of run settings (such as `shots: [8, 32]`), got {type(data).__name__}")
    lines = {str(key.value): key.start_mark.line + 1 for key, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    return expand(data, source=str(path), lines=lines, overrides=overrides)


def expand(values: dict[str, Any], *, source: str = "spec", lines: dict[str, int] | None = None,
           overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Check ``values`` key by key and expand the product of its lists into run configs."""
    lines = lines or {}
    values = {str(k): v for k, v in values.items()}
    values.update(overrides or {})
    known = RunConfig.field_names()

    def where(key: str) -> str:
        return f"{source} line {lines[key]}" if key in lines else source

    for key, value in values.items():
        if key not in known:
            import difflib

            match = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {match[0]}?)" if match else f"; known keys: {', '.join(known)}"
            raise XlsptError(f"{where(key)}: unknown key {key!r}{hint}")
        if isinstance(value, list) and not value:
            raise XlsptError(f"{where(key)}: {key} is an empty list: give at least one value")
        if isinstance(value, dict) and key != "label_words":
            raise XlsptError(f"{where(key)}: {key} must be a value or a list of values, not a mapping")
        if key in CROSS_CHECKED:
            continue
        try:  # each value checked alone, so the error names the key and its line
            for item in _axis(key, value):
                RunConfig.from_mapping({key: item})
        except ConfigError as exc:
            raise XlsptError(f"{where(key)}: {exc.field}: {exc.problem}") from None
    axes = {key: _axis(key, value) for key, value in values.items()}
    runs = []
    for combination in itertools.product(*axes.values()):
        try:
            runs.append(RunConfig.from_mapping(dict(zip(axes, combination))))
        except ConfigError as exc:
            raise XlsptError(f"{where(exc.field)}: {exc.field}: {exc.problem}") from None
    return SweepSpec(source=source, values=values, runs=tuple(dict.fromkeys(runs)))


def _axis(key: str, value: Any) -> list:
    if key in LIST_VALUED:
        return [value]
    return list(value) if isinstance(value, list) else [value]
