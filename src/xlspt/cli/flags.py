"""What every command's flags are made of: one flag per run-config field (its help, type and choices from the
field), config dataclasses as flag groups, ``--device``/``--threads``/``--quiet``, and turning the parsed flags
back into the library's configs (flags given win over a preset, which wins over the defaults)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..errors import XlsptError


def flag(field_name: str) -> str:
    """The command-line flag of a run-config field: ``prompt_length`` -> ``--prompt-length``."""
    return "--" + field_name.replace("_", "-")


# ---------------------------------------------------------------- flags generated from the run config

#: The run-config fields of each command, grouped under titles (a command lists the groups it takes).
GROUPS = {
    "model and prompt": ("model", "trust_remote_code", "dtype", "engine", "prompt_length", "reparam_hidden", "label_words",
                         "allow_subword_labels", "special_tokens"),
    "data and training": ("data", "text_column", "label_column", "language_column", "split_column", "train_lang", "shots",
                          "epochs", "min_steps", "patience", "loss", "lr", "batch_size", "seed", "max_length", "freeze", "model_lr",
                          "save_model", "langs", "limit"),
    "ensembles and calibration": ("ensemble", "shared_sample", "calibration", "standardize", "prior", "content_free_script"),
    "method": ("method", "lora_rank", "lora_alpha", "lora_dropout", "lora_lr", "lora_targets"),
}
#: The fields a command that loads a saved prompt takes, with what their default means there.
LOADING = {"model": "the model the prompt was trained with", "dtype": "the dtype the prompt was trained in",
            "engine": None, "trust_remote_code": None}
DATA = {"data": None, "text_column": None, "label_column": None, "language_column": None, "split_column": None,
         "langs": None}
CALIBRATION = {"calibration": "what the prompt was saved with", "standardize": None, "prior": None, "content_free_script": None}
#: What the calibration flags read where a saved prompt is scored (the run config's help speaks of training runs).
CALIBRATION_HELP = (
    "zero-shot (the study's, no correction); content-free (protocol a: no target-language data); unlabeled "
    "(protocol b: the label prior of {}); batch (protocol b: of the texts classified)",
    "with --calibration unlabeled or batch: first move each read-out dimension to the training language's mean and "
    "spread (saved with the prompt), estimated on the same unlabeled texts")


def calibration_help(unlabeled: str) -> dict:
    return {"calibration": CALIBRATION_HELP[0].format(unlabeled), "standardize": CALIBRATION_HELP[1]}
METAVARS = {"model": "NAME", "data": "PATH", "text_column": "NAME", "label_column": "NAME", "language_column": "NAME",
             "split_column": "NAME", "langs": "LANGS", "label_words": "WORDS", "train_lang": "LANG",
             "reparam_hidden": "H", "model_lr": "X", "lora_targets": "NAMES", "min_steps": "N", "patience": "N"}


def add_config_flags(p: argparse.ArgumentParser, names, *, title: str | None = None, defaults: dict | None = None,
                     helps: dict | None = None) -> None:
    """One flag per :class:`~xlspt.study.config.RunConfig` field in ``names``, with its help, type and choices
    from the field. Flags not given stay out of the namespace (``SUPPRESS``), so only what the user typed
    overrides the config's defaults, a preset or a sweep spec; ``defaults`` says what a default means instead,
    ``helps`` what a flag does where it differs from a run's."""
    import dataclasses
    import typing
    from enum import Enum

    from ..study.config import REFERENCE_MODEL_LR, RunConfig

    types, base, defaults = typing.get_type_hints(RunConfig), RunConfig(), defaults or {}
    for group_title, group in GROUPS.items():
        g = p.add_argument_group(f"{group_title}: {title}" if title else group_title)
        for f in dataclasses.fields(RunConfig):
            if f.name not in group or f.name not in names:
                continue
            default = getattr(base, f.name) if f.name != "data" else None  # not the $XLSPTDATA resolved into it
            default = defaults.get(f.name) or (default.value if isinstance(default, Enum) else default)
            shown = default is not None and default is not False  # 0 and 0.0 are defaults worth showing (0 == False)
            text = ((helps or {}).get(f.name, f.metadata["help"]) + (f" (default: {default})" if shown else "")).replace("%", "%%")
            kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text)
            kind = types[f.name]
            if kind is bool:
                g.add_argument(flag(f.name), action=argparse.BooleanOptionalAction,
                               **{**kwargs, "help": text + ("; --train-model is --no-freeze" if f.name == "freeze" else "")})
                if f.name == "freeze":
                    g.add_argument("--train-model", dest="freeze", action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                continue
            if isinstance(kind, type) and issubclass(kind, Enum):
                kwargs["choices"] = [e.value for e in kind]
            else:
                kwargs["metavar"] = METAVARS.get(f.name) or {int: "N", float: "X"}.get(kind, "VALUE")
                kwargs["type"] = {int: int, float: float}.get(kind) or (
                    (lambda text: text if text == REFERENCE_MODEL_LR else float(text)) if f.name == "model_lr" else None)
            g.add_argument(flag(f.name), **{k: v for k, v in kwargs.items() if v is not None})


def add_dataclass_flags(group, config_class, metavars: dict | None = None) -> None:
    """A flag per field of a config dataclass (a string enum's values as choices), its help and default;
    ``metavars``: a field's placeholder where the type's (``ADDR``, ``N``, ``X``) would mislead."""
    import dataclasses
    import enum
    import typing

    types = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = types[f.name]
        optional = [k for k in typing.get_args(kind) if k is not type(None)]
        kind = optional[0] if optional else kind  # `int | None`: an int flag, absent by default
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            group.add_argument(flag(f.name), dest=f.name, default=f.default.value, choices=[e.value for e in kind],
                               help=f.metadata["help"] + " (default: %(default)s)")
            continue
        shown = "" if f.default is None else " (default: %(default)s)"
        group.add_argument(flag(f.name), dest=f.name, type=kind, default=f.default,
                           metavar=(metavars or {}).get(f.name) or {str: "ADDR", int: "N", float: "X"}[kind],
                           help=f.metadata["help"] + shown)


def run_config(args, base=None):
    """The run config from the flags the user gave, over ``base``: a ``--preset``, else RunConfig's defaults
    (the flags win, then the preset, then the defaults)."""
    from ..study.config import RunConfig
    from ..study.spec import run_preset

    if base is None and getattr(args, "preset", None):
        base = run_preset(args.preset)
    given = {name: getattr(args, name) for name in RunConfig.field_names() if hasattr(args, name)}
    return (base or RunConfig()).replace(**given) if given else (base or RunConfig())


def recipe_config(args):
    """``run`` and ``train``: the run config over ``--preset``, else over the default recipe where it applies (frozen
    soft prompts trained afresh; a probe, a trained model or a resumed prompt start from the study's settings); and
    the line that names the recipe (said once the input is checked), or ``None``."""
    from ..classifiers.recipes import DEFAULT_RECIPE, recipe

    fresh_prompts = (getattr(args, "method", "prompt") == "prompt" and getattr(args, "freeze", True)
                     and not getattr(args, "resume", None))
    name = args.preset or (DEFAULT_RECIPE if fresh_prompts else None)
    line = recipe(name).describe(default=not args.preset) if name else None
    args.preset = name
    return run_config(args), line


def add_run_command(sub, name: str, help: str, *, skip=(), out: str | None = None, preset: bool = True):
    from ..study.config import RunConfig
    from ..study.spec import RUN_PRESETS

    p = sub.add_parser(name, help=help)
    if preset:
        p.add_argument("--preset", choices=RUN_PRESETS, help="the recipe to start from (flags given override it): "
                       "quality (the default: 8 reparameterized prompts with content-free calibration, no target-language "
                       "data), quality-lora (4 reparameterized 32-shot prompts with low-rank adapters, content-free "
                       "calibration: more accurate, 10x the training), quality-unlabeled (8 reparameterized 32-shot prompts "
                       "standardized on each language's unlabeled texts), all chosen on the development languages; study "
                       "(the study's single prompt). "
                       "A probe, --method lora, --no-freeze or --resume start from the study's settings")
    add_config_flags(p, [n for n in RunConfig.field_names() if n not in skip])
    if out:
        p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<model>-<time>)")
        p.add_argument("--overwrite", action="store_true", help=f"replace the {out} of an earlier run in --out")
    return p


def add_device(p: argparse.ArgumentParser, threads: bool = True, recorded: str | None = None) -> None:
    """``--device``, ``--threads`` (unless ``threads`` is false) and ``--quiet``; ``recorded`` says where the command
    records the device and threads it ran with (``None``: a command that writes no results, which says nothing)."""
    from ..models.devices import DEVICES

    note = f"; {recorded}" if recorded else ""
    p.add_argument("--device", default=None if not threads else "auto", metavar="{" + ",".join(DEVICES) + ",cuda:N}",
                   help=f"where the model runs: auto = a CUDA GPU, else Apple's MPS, else the CPU (default: auto){note}")
    if threads:
        p.add_argument("--threads", type=int, metavar="N", help=f"CPU threads for torch (default: torch's choice){note}")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def use_threads(threads: int | None) -> None:
    from ..models.devices import set_threads

    set_threads(threads)


def data_config(args, language: str | None = None):
    """The data of ``--data`` and its column flags."""
    from ..data import DataConfig

    names = ("text_column", "label_column", "language_column", "split_column")
    return DataConfig(source=getattr(args, "data", None), **{n: getattr(args, n) for n in names if hasattr(args, n)},
                      **({"language": language} if language else {}))


def calibration_config(args):
    from ..pipeline import calibration_from

    return calibration_from(getattr(args, "calibration", None), getattr(args, "standardize", False),
                            getattr(args, "unlabeled_split", None), getattr(args, "prior", True),
                            getattr(args, "content_free_script", True))


def load_options(args):
    from ..pipeline import LoadOptions

    return LoadOptions(model=getattr(args, "model", None), dtype=getattr(args, "dtype", None), device=args.device,
                       trust_remote_code=getattr(args, "trust_remote_code", False))


def read_lines(path: str, option: str, stdin: Callable[[], str] = lambda: sys.stdin.read()) -> list[str]:
    """The lines of the UTF-8 text file ``path`` (``-``: standard input), or one line naming ``option``."""
    if path == "-":
        return stdin().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise XlsptError(f"cannot read {option} {path}: {exc.__class__.__name__}: pass a UTF-8 text file") from None
