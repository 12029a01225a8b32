"""The ``xlspt`` command line: parse, call one library function (:mod:`xlspt.pipeline`, the study), print.

Every user-fixable problem ends in one ``error: ...`` line on stderr and exit status 2;
an interrupt ends with status 130. Output files appear only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Sequence

from ._version import __version__

DEBUG_ENV = "XLSPT_DEBUG"


def flag(field_name: str) -> str:
    """The command-line flag of a run-config field: ``prompt_length`` -> ``--prompt-length``."""
    return "--" + field_name.replace("_", "-")


# ---------------------------------------------------------------- flags generated from the run config

#: The run-config fields of each command, grouped under titles (a command lists the groups it takes).
_GROUPS = {
    "model and prompt": ("model", "trust_remote_code", "dtype", "engine", "prompt_length", "reparam_hidden", "label_words",
                         "allow_subword_labels", "special_tokens"),
    "data and training": ("data", "text_column", "label_column", "language_column", "split_column", "train_lang", "shots",
                          "epochs", "min_steps", "patience", "loss", "lr", "batch_size", "seed", "max_length", "freeze", "model_lr",
                          "save_model", "langs", "limit"),
    "ensembles and calibration": ("ensemble", "shared_sample", "calibration", "standardize", "prior"),
    "method": ("method", "lora_rank", "lora_alpha", "lora_dropout", "lora_lr", "lora_targets"),
}
#: The fields a command that loads a saved prompt takes, with what their default means there.
_LOADING = {"model": "the model the prompt was trained with", "dtype": "the dtype the prompt was trained in",
            "engine": None, "trust_remote_code": None}
_DATA = {"data": None, "text_column": None, "label_column": None, "language_column": None, "split_column": None,
         "langs": None}
_CALIBRATION = {"calibration": "what the prompt was saved with", "standardize": None, "prior": None}
#: What the calibration flags read where a saved prompt is scored (the run config's help speaks of training runs).
_CALIBRATION_HELP = (
    "zero-shot (the study's, no correction); content-free (protocol a: no target-language data); unlabeled "
    "(protocol b: the label prior of {}); batch (protocol b: of the texts classified)",
    "with --calibration unlabeled or batch: first move each read-out dimension to the training language's mean and "
    "spread (saved with the prompt), estimated on the same unlabeled texts")


def _calibration_help(unlabeled: str) -> dict:
    return {"calibration": _CALIBRATION_HELP[0].format(unlabeled), "standardize": _CALIBRATION_HELP[1]}
_METAVARS = {"model": "NAME", "data": "PATH", "text_column": "NAME", "label_column": "NAME", "language_column": "NAME",
             "split_column": "NAME", "langs": "LANGS", "label_words": "WORDS", "train_lang": "LANG",
             "reparam_hidden": "H", "model_lr": "X", "lora_targets": "NAMES", "min_steps": "N", "patience": "N"}


def _add_config_flags(p: argparse.ArgumentParser, names, *, title: str | None = None, defaults: dict | None = None,
                      helps: dict | None = None) -> None:
    """One flag per :class:`~xlspt.study.config.RunConfig` field in ``names``, with its help, type and choices
    from the field. Flags not given stay out of the namespace (``SUPPRESS``), so only what the user typed
    overrides the config's defaults, a preset or a sweep spec; ``defaults`` says what a default means instead,
    ``helps`` what a flag does where it differs from a run's."""
    import dataclasses
    import typing
    from enum import Enum

    from .study.config import REFERENCE_MODEL_LR, RunConfig

    types, base, defaults = typing.get_type_hints(RunConfig), RunConfig(), defaults or {}
    for group_title, group in _GROUPS.items():
        g = p.add_argument_group(f"{group_title}: {title}" if title else group_title)
        for f in dataclasses.fields(RunConfig):
            if f.name not in group or f.name not in names:
                continue
            default = getattr(base, f.name) if f.name != "data" else None  # not the $XLSPT_DATA resolved into it
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
                kwargs["metavar"] = _METAVARS.get(f.name) or {int: "N", float: "X"}.get(kind, "VALUE")
                kwargs["type"] = {int: int, float: float}.get(kind) or (
                    (lambda text: text if text == REFERENCE_MODEL_LR else float(text)) if f.name == "model_lr" else None)
            g.add_argument(flag(f.name), **{k: v for k, v in kwargs.items() if v is not None})


def _run_config(args, base=None):
    """The run config from the flags the user gave, over ``base``: a ``--preset``, else RunConfig's defaults
    (the flags win, then the preset, then the defaults)."""
    from .study.config import RunConfig
    from .study.spec import run_preset

    if base is None and getattr(args, "preset", None):
        base = run_preset(args.preset)
    given = {name: getattr(args, name) for name in RunConfig.field_names() if hasattr(args, name)}
    return (base or RunConfig()).replace(**given) if given else (base or RunConfig())


def _recipe_config(args):
    """``run`` and ``train``: the run config over ``--preset``, else over the default recipe where it applies (frozen
    soft prompts trained afresh; a probe, a trained model or a resumed prompt start from the study's settings); and
    the line that names the recipe (said once the input is checked), or ``None``."""
    from .classifiers.recipes import DEFAULT_RECIPE, recipe

    fresh_prompts = (getattr(args, "method", "prompt") == "prompt" and getattr(args, "freeze", True)
                     and not getattr(args, "resume", None))
    name = args.preset or (DEFAULT_RECIPE if fresh_prompts else None)
    line = recipe(name).describe(default=not args.preset) if name else None
    args.preset = name
    return _run_config(args), line


def _add_run_command(sub, name: str, help: str, *, skip=(), out: str | None = None, preset: bool = True):
    from .study.config import RunConfig
    from .study.spec import RUN_PRESETS

    p = sub.add_parser(name, help=help)
    if preset:
        p.add_argument("--preset", choices=RUN_PRESETS, help="the recipe to start from (flags given override it): "
                       "quality (the default: 8 reparameterized prompts with content-free calibration, no target-language "
                       "data), quality-unlabeled (8 reparameterized 32-shot prompts standardized on each language's "
                       "unlabeled texts), both chosen on the development languages; study (the study's single prompt). "
                       "A probe, --method lora, --no-freeze or --resume start from the study's settings")
    _add_config_flags(p, [n for n in RunConfig.field_names() if n not in skip])
    if out:
        p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<model>-<time>)")
        p.add_argument("--overwrite", action="store_true", help=f"replace the {out} of an earlier run in --out")
    return p


def _add_device(p: argparse.ArgumentParser, threads: bool = True, recorded: str | None = None) -> None:
    """``--device``, ``--threads`` (unless ``threads`` is false) and ``--quiet``; ``recorded`` says where the command
    records the device and threads it ran with (``None``: a command that writes no results, which says nothing)."""
    from .models.devices import DEVICES

    note = f"; {recorded}" if recorded else ""
    p.add_argument("--device", default=None if not threads else "auto", metavar="{" + ",".join(DEVICES) + ",cuda:N}",
                   help=f"where the model runs: auto = a CUDA GPU, else Apple's MPS, else the CPU (default: auto){note}")
    if threads:
        p.add_argument("--threads", type=int, metavar="N", help=f"CPU threads for torch (default: torch's choice){note}")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _add_commands(sub) -> None:
    from .study.spec import PRESETS

    _add_device(_add_run_command(sub, "run", "train a prompt on English and evaluate it on target languages", out="results"),
                recorded="recorded in the run's record.json and summary.json")
    p = _add_run_command(sub, "train", "train a prompt and save it (no evaluation)", skip=("langs", "save_model", "limit"),
                         out="prompt")
    p.add_argument("--resume", metavar="PATH", help="continue training from a saved prompt (its length and reparameterization network); the optimizer starts afresh")
    _add_device(p)
    p = _add_run_command(sub, "label-words", "choose label words on the training language's dev split", preset=False,
                         skip=("langs", "save_model", "label_words", "ensemble", "shared_sample", "calibration", "standardize",
                               "prior", "method", "limit", "lora_rank", "lora_alpha", "lora_dropout", "lora_lr",
                               "lora_targets"))
    p.add_argument("--candidate", action="append", default=[], metavar="WORDS",
                   help="a label-word set (as --label-words: seven words in class order or class=word pairs, "
                        "word1|word2 for several); repeat for each candidate; 'default' is the model family's (SIB-200) or the "
                        "words made from the label names; with none, xlspt proposes the default words, the default "
                        "words each with its two nearest tokens in the model's embedding table, and those tokens alone")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p = sub.add_parser("sweep", help="run a grid of configurations into a result store (resumable)")
    p.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="a YAML mapping of run settings to a value or a list of values")
    p.add_argument("--preset", choices=PRESETS, help="a built-in spec: smoke (machinery check, <20 min on 2 CPU cores), gemma "
                   "(the study's grid on the embedded model), gemma-shots (its shots axis), gemma-lora (low-rank adapters beside its frozen and whole-model runs), paper (the study's XGLM/BLOOM grid; needs the Hub), quality and quality-unlabeled (one tuned run each)")
    p.add_argument("--store", required=True, metavar="DIR", help="result store: one folder per run, kill-safe")
    p.add_argument("--status", action="store_true", help="list what is done, running, failed and left, and exit")
    p.add_argument("--json", action="store_true", help="with --status: one JSON object of counts")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: Ray tasks on a local instance or --ray-address (default: %(default)s)")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (e.g. ray://head:10001 or auto)")
    from .study.config import RunConfig

    _add_config_flags(p, RunConfig.field_names(), title="override the spec (one value each)")
    _add_device(p, threads=False, recorded="recorded in each run's record")
    p = sub.add_parser("report", help="tables, figures and the study's findings from a result store")
    p.add_argument("--store", required=True, metavar="DIR", help="the result store of an `xlspt sweep`")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write runs.csv, the tables, figures and report.md")
    _add_scoring_commands(sub)


def _add_scoring_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate saved prompts on target languages")
    p.add_argument("--prompt", required=True, action="append", metavar="PATH", help="a run directory, a prompt .safetensors "
                   "file or a Hub repository (owner/name); repeat to score several prompts from one pass over the text")
    _add_config_flags(p, {**_LOADING, **_DATA, "limit": None, **_CALIBRATION}, defaults={**_LOADING, **_CALIBRATION},
                      helps=_calibration_help("each language's unlabeled texts of --unlabeled-split"))
    p.add_argument("--out", metavar="DIR", help="write results.csv (with a prompt column for several prompts) and the summary here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--cache-states", action="store_true", help="keep the text states on disk (under the cache directory) so that later evaluations of the same sentences skip the text pass")
    p.add_argument("--vote", action="store_true", help="score the given prompts as one ensemble (mean class log-probabilities)")
    p.add_argument("--members", action="store_true", help="also show each ensemble member's own results (same text pass)")
    p.add_argument("--unlabeled-split", default="dev", metavar="SPLIT", help="with --calibration unlabeled: the split "
                   "whose texts (labels unused) estimate each language's prior (default: %(default)s)")
    _add_device(p, recorded="recorded in summary.json with --out")
    p = sub.add_parser("predict", help="classify new text with a saved prompt")
    p.add_argument("--prompt", required=True, metavar="PATH", help="a run directory, a prompt .safetensors file, or a Hub repository (owner/name; $XLSPT_HUB_DIR for a local hub)")
    p.add_argument("texts", nargs="*", help="texts to classify; with none, lines are read from --file or standard input")
    p.add_argument("--file", metavar="FILE", help="read one text per line from FILE ('-' for standard input)")
    _add_config_flags(p, {**_LOADING, **_CALIBRATION}, defaults={**_LOADING, **_CALIBRATION},
                      helps=_calibration_help("the lines of --unlabeled FILE"))
    p.add_argument("--unlabeled", metavar="FILE", help="with --calibration unlabeled: unlabeled texts of the same language, one per line")
    p.add_argument("--lang", metavar="CODE", help="the texts' language (e.g. ory_Orya): content-free calibration then uses its script")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="table: label, probability and "
                   "text per line; json: one JSON object per line (text, label, probability, top_k); csv: a header and a row per text (default: %(default)s)")
    p.add_argument("--top-k", type=int, metavar="K", help="also give the K most probable labels with their probabilities")
    p.add_argument("--min-confidence", type=float, metavar="P", help="answer 'abstain' when the most probable label's probability is below P")
    _add_device(p)
    _add_self_train_command(sub)
    p = sub.add_parser("push", help="share a saved prompt folder on the Hugging Face Hub (or a local hub folder), with its model card")
    p.add_argument("--prompt", required=True, metavar="DIR", help="a run directory (prompt.safetensors, prompt.json)")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub repository (created if needed)")
    p.add_argument("--hub", metavar="DIR", help="a local folder standing in for the Hub (default: $XLSPT_HUB_DIR, else the Hub)")
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    p.add_argument("--token", help="Hub token (default: your `hf auth login`)")
    p.add_argument("--dry-run", action="store_true", help="list the files and the model card's metadata that "
                   "would be uploaded, and upload nothing")
    _add_serve_command(sub)
    _add_label_command(sub)
    p = sub.add_parser("languages", help="list the languages of the data and the study's 52")
    _add_config_flags(p, {k: None for k in _DATA if k != "langs"})
    p.add_argument("--study", action="store_true", help="only the study's 52 target languages (no data needed)")
    sub.add_parser("models", help="list the embedded model, the study's models and the supported architectures")


def _add_dataclass_flags(group, config_class, metavars: dict | None = None) -> None:
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


def _add_self_train_command(sub) -> None:
    from .classifiers import SelfTrainingConfig

    p = sub.add_parser("self-train", help="train a saved prompt further on its own confident labels of unlabeled "
                       "target-language text (protocol b)")
    p.add_argument("--prompt", required=True, metavar="PATH", help="a run directory or a Hub repository (owner/name)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the self-trained prompt goes (with --scope "
                   "per-language: a folder per language inside)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier prompt in --out")
    p.add_argument("--unlabeled", metavar="FILE", help="unlabeled texts of one language (--lang), one per line; "
                   "default: each --langs language's --unlabeled-split texts of --data, labels unread")
    p.add_argument("--lang", metavar="CODE", help="the language of --unlabeled FILE (e.g. ory_Orya)")
    p.add_argument("--unlabeled-split", default="dev", metavar="SPLIT", help="the split whose texts (labels unread) are "
                   "self-trained on; never the test split that evaluate scores (default: %(default)s)")
    _add_config_flags(p, _DATA, defaults=_DATA)
    _add_dataclass_flags(p.add_argument_group("self-training"), SelfTrainingConfig)
    _add_config_flags(p, _LOADING, defaults=_LOADING)
    _add_device(p)


def _add_serve_command(sub) -> None:
    from .serve.config import API_KEY_ENV, ServeConfig

    p = sub.add_parser("serve", help="serve saved prompts, ensembles and probes over HTTP from one loaded model")
    p.add_argument("--task", action="append", default=[], metavar="NAME=PATH", help="a task: a run folder or a Hub "
                   "repository (owner/name) under a name; repeat for several")
    p.add_argument("--tasks", metavar="DIR", help="one task per run folder inside DIR, named after its folder")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on every request but /healthz and /readyz (default: ${API_KEY_ENV}, "
                        "which keeps the key out of the process list)")
    _add_dataclass_flags(p.add_argument_group("listening and batching"), ServeConfig)
    _add_config_flags(p, {k: v for k, v in _LOADING.items() if k != "engine"}, defaults=_LOADING)
    _add_device(p)


def _add_label_command(sub) -> None:
    from .corpus import LabelConfig

    p = sub.add_parser("label", help="label a corpus (Parquet, JSON Lines, CSV/TSV or text files) with several saved "
                       "classifiers in one pass; resumable, here or on Ray")
    p.add_argument("--task", action="append", default=[], metavar="NAME=PATH", help="a task: a run folder or a Hub "
                   "repository (owner/name) under a name; repeat for several (all on one model)")
    p.add_argument("--tasks", metavar="DIR", help="one task per run folder inside DIR, named after its folder")
    p.add_argument("--input", required=True, metavar="PATH", help="a file, a folder (every .parquet, .jsonl, .ndjson, "
                   ".csv, .tsv and .txt inside) or a quoted glob such as 'crawl/*.parquet'")
    p.add_argument("--output", required=True, metavar="DIR", help="where the labelled shards (one per input file) and "
                   "manifest.json go; a rerun with the same arguments labels only what is missing")
    p.add_argument("--overwrite", action="store_true", help="replace the labels of another job in --output")
    p.add_argument("--ray-address", metavar="ADDR", help="with --executor ray: an existing Ray cluster (default: a local instance)")
    _add_dataclass_flags(p.add_argument_group("reading, scoring and writing"), LabelConfig,
                         {"text_column": "COLUMN", "id_column": "COLUMN", "lang_column": "COLUMN", "lang": "CODE",
                          "top_k": "K", "min_confidence": "P", "workers": "N", "chunk_rows": "N"})
    _add_config_flags(p, {k: v for k, v in _LOADING.items() if k != "engine"}, defaults=_LOADING)
    _add_device(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlspt", description="Cross-lingual soft prompt tuning: train a prompt on English "
                                     "examples (SIB-200 or your own data), classify text in other languages.")
    parser.add_argument("--version", action="version", version=f"xlspt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub)
    debug_help = f"show the traceback of an unexpected error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # also after the command: `xlspt run ... --debug`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


# ---------------------------------------------------------------- running a command


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (``finally`` blocks, atomic writes)."""


def _on_signal(signum, frame) -> None:
    from .progress import request_stop

    ending = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    request_stop(ending)  # raised again at the next unit of work if this raise is lost (progress.checkpoint)
    raise ending()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    from .progress import quiet_libraries

    quiet_libraries()
    from .progress import request_stop

    previous = _handle_signals()
    try:
        return COMMANDS[args.command](args)
    except BaseException as exc:  # noqa: BLE001 - every ending becomes one line and an exit status
        return _ending(exc, debug)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        request_stop(None)


def _handle_signals() -> dict:
    """SIGTERM, and Ctrl-C where Python's own handler has it, handled by :func:`_on_signal`; the handlers
    they replace. A SIGINT ignored (a command started in the background of a script) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_signal)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    return previous


def _ending(exc: BaseException, debug: bool) -> int:
    """The exit status of a command that raised ``exc``, after one line on stderr saying why."""
    from .errors import ConfigError, XlsptError

    if isinstance(exc, ConfigError):  # the library names the config field; the user typed its flag
        print(f"error: {flag(exc.field)}: {exc.problem}", file=sys.stderr)
        return 2
    if isinstance(exc, XlsptError):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, (KeyboardInterrupt, Terminated)):
        word = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
        print(f"{word}: what was finished is kept; nothing half-written was left", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    if isinstance(exc, BrokenPipeError):  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    if debug or not isinstance(exc, Exception):  # a bug of ours or a library's: the traceback only when asked
        raise exc
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    print(f"error: unexpected {exc.__class__.__name__}{': ' + first if first else ''} "
          f"(a bug: rerun with --debug or {DEBUG_ENV}=1 for the traceback, and report it)", file=sys.stderr)
    return 1


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _set_threads(threads: int | None) -> None:
    from .models.devices import set_threads

    set_threads(threads)


def _data_config(args, language: str | None = None):
    """The data of ``--data`` and its column flags."""
    from .data import DataConfig

    names = ("text_column", "label_column", "language_column", "split_column")
    return DataConfig(source=getattr(args, "data", None), **{n: getattr(args, n) for n in names if hasattr(args, n)},
                      **({"language": language} if language else {}))


def _calibration(args):
    from .pipeline import calibration_from

    return calibration_from(getattr(args, "calibration", None), getattr(args, "standardize", False),
                            getattr(args, "unlabeled_split", None), getattr(args, "prior", True))


def _load_options(args):
    from .pipeline import LoadOptions

    return LoadOptions(model=getattr(args, "model", None), dtype=getattr(args, "dtype", None), device=args.device,
                       trust_remote_code=getattr(args, "trust_remote_code", False))


# ---------------------------------------------------------------- commands


def cmd_run(args) -> int:
    from . import pipeline

    config, recipe_line = _recipe_config(args)
    _set_threads(getattr(args, "threads", None))
    out, outcome = pipeline.run(config, args.out, overwrite=args.overwrite, device=args.device, progress=not args.quiet,
                                announce=recipe_line)
    _say(outcome.fit)
    for note in outcome.record.notes:
        _say(f"note: {note}")
    print(outcome.table)
    _say(f"wrote {out}")
    return 0


def cmd_train(args) -> int:
    from . import pipeline

    config, recipe_line = _recipe_config(args)
    _set_threads(getattr(args, "threads", None))
    path, summary = pipeline.train(config, args.out, overwrite=args.overwrite, resume=args.resume, device=args.device,
                                   progress=not args.quiet, announce=recipe_line)
    _say(summary)
    print(path)
    return 0


def cmd_evaluate(args) -> int:
    from . import pipeline

    _set_threads(getattr(args, "threads", None))
    options = pipeline.EvaluateOptions(vote=args.vote, members=args.members, calibration=_calibration(args),
                                       engine=getattr(args, "engine", "auto"), cache_states=args.cache_states,
                                       progress=not args.quiet, limit=getattr(args, "limit", 0))
    table, written = pipeline.evaluate(args.prompt, _data_config(args), getattr(args, "langs", "52"), args.out,
                                      overwrite=args.overwrite, load=_load_options(args), options=options)
    print(table)
    if written:
        _say(f"wrote {' and '.join(map(str, written))}")
    return 0


def cmd_predict(args) -> int:
    import itertools

    from . import pipeline

    options = pipeline.PredictOptions(
        calibration=_calibration(args), language=args.lang, top_k=args.top_k, min_confidence=args.min_confidence,
        engine=getattr(args, "engine", "auto"),
        unlabeled=[t for t in pipeline.read_lines(args.unlabeled, "--unlabeled") if t.strip()] if args.unlabeled else [])
    if args.unlabeled and not options.unlabeled:
        raise pipeline.XlsptError(f"--unlabeled {args.unlabeled} holds no text: give unlabeled texts of the language, one per line")
    if not args.texts and not args.file and sys.stdin.isatty():
        raise pipeline.XlsptError("no text to classify: pass texts as arguments, --file FILE, or lines on standard input")
    _set_threads(getattr(args, "threads", None))
    lines = (iter(pipeline.read_lines(args.file, "--file")) if args.file and args.file != "-" else
             (line.rstrip("\r\n") for line in sys.stdin) if args.file == "-" or not args.texts else iter(()))
    frames, described, labels = pipeline.predict(args.prompt, itertools.chain(args.texts, lines), load=_load_options(args),
                                                 options=options)
    writer = pipeline.PredictionWriter(args.format, args.top_k is not None)
    count = sum(writer.write(frame) for frame in frames)
    _say(f"{described}; {count} texts; labels {', '.join(labels)}")
    return 0


def cmd_self_train(args) -> int:
    import dataclasses

    from . import pipeline
    from .classifiers import SelfTrainingConfig

    config = SelfTrainingConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SelfTrainingConfig)})
    data = _data_config(args)
    if args.unlabeled:
        if not args.lang:
            raise pipeline.XlsptError("--unlabeled FILE needs --lang CODE: the language its texts are in")
        unlabeled = {args.lang: [t for t in pipeline.read_lines(args.unlabeled, "--unlabeled") if t.strip()]}
    else:
        unlabeled = pipeline.unlabeled_texts(data, args.langs, args.unlabeled_split)
    _set_threads(getattr(args, "threads", None))
    written = pipeline.self_train(args.prompt, args.out, unlabeled, config, data=data, overwrite=args.overwrite,
                                  load=_load_options(args), progress=not args.quiet)
    for folder, languages in written:
        _say(f"self-trained on {sum(languages.values())} pseudo-labelled texts of {len(languages)} languages "
             f"(protocol b); wrote {folder}")
    return 0


def cmd_serve(args) -> int:
    from .serve import ServeConfig, serve, task_sources

    config = ServeConfig(**{name: getattr(args, name) for name in ServeConfig.field_names()})
    _set_threads(getattr(args, "threads", None))
    serve(task_sources(args.task, args.tasks), config, load=_load_options(args), api_key=args.api_key, say=_say)
    return 0


def cmd_label(args) -> int:
    from .corpus import LabelConfig, label_corpus
    from .serve import task_sources

    config = LabelConfig(**{name: getattr(args, name) for name in LabelConfig.field_names()})
    _set_threads(getattr(args, "threads", None))
    outcome = label_corpus(args.input, task_sources(args.task, args.tasks), args.output, config, load=_load_options(args), overwrite=args.overwrite,
                           ray_address=args.ray_address, progress=not args.quiet, say=_say)
    before = outcome.shards - outcome.labelled_now
    print(f"{outcome.rows} rows of {outcome.shards} shards labelled in {outcome.output} "
          f"({outcome.rows_now} now in {outcome.seconds:.0f} s{f'; {before} shards before' if before else ''}); "
          f"manifest: {outcome.output / 'manifest.json'}")
    return 0


def cmd_label_words(args) -> int:
    from . import pipeline

    config = _run_config(args)
    best, table = pipeline.label_words(config, args.candidate, progress=not args.quiet)
    for row in table.itertuples():
        print(f"{100 * row.dev_accuracy:5.1f}%  macro-F1 {100 * row.dev_macro_f1:5.1f}%  {json.dumps(row.label_words, ensure_ascii=False)}")
    words = ",".join(f"{k}={v}" for k, v in best.items())
    _say(f"best on {config.train_lang} dev: --label-words {json.dumps(words, ensure_ascii=False)}")
    return 0


def cmd_sweep(args) -> int:
    from .study.config import RunConfig
    from .study.sweep import sweep_from

    overrides = {name: getattr(args, name) for name in RunConfig.field_names() if hasattr(args, name)}
    status = sweep_from(args.spec, args.preset, args.store, overrides, status_only=args.status, executor=args.executor,
                        ray_address=args.ray_address, retry_failed=args.retry_failed, device=args.device,
                        progress=not args.quiet)
    print(json.dumps(status.as_json()) if args.status and args.json else status.table())
    return 0


def cmd_report(args) -> int:
    from .report.study import write_report

    summary = write_report(args.store, args.out)
    for path in summary["files"]:
        print(path)
    for warning in summary["warnings"]:
        _say(f"warning: {warning}")
    _say(f"report of {summary['runs']} finished runs ({summary['failed']} failed) in {args.out}")
    return 0


def cmd_push(args) -> int:
    from .pipeline import push

    print(push(args.prompt, args.repo, hub=args.hub, token=args.token, private=args.private, dry_run=args.dry_run))
    if args.dry_run:
        _say(f"dry run: nothing was uploaded; push again without --dry-run to share {args.prompt} as {args.repo}")
        return 0
    _say(f"pushed {args.prompt} to {args.repo}: load it with `xlspt predict --prompt {args.repo}` "
         f"or xlspt.PromptClassifier.from_pretrained({args.repo!r})")
    return 0


def cmd_languages(args) -> int:
    from .pipeline import languages_table

    table, closing = languages_table(None if args.study else _data_config(args))
    print(table)
    _say(closing)
    return 0


def cmd_models(args) -> int:
    from .pipeline import models_table

    print(models_table())
    return 0


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "sweep": cmd_sweep,
    "label-words": cmd_label_words,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "self-train": cmd_self_train,
    "push": cmd_push,
    "serve": cmd_serve,
    "label": cmd_label,
    "languages": cmd_languages,
    "models": cmd_models,
}

if __name__ == "__main__":
    sys.exit(main())
