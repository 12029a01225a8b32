"""The ``xlspt`` command line: a thin layer over the Python API.

Every user-fixable problem ends in one ``error: ...`` line on stderr and exit status 2;
an interrupt ends with status 130. Output files appear only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from . import __version__

DEBUG_ENV = "XLSPT_DEBUG"

def _add_data(p: argparse.ArgumentParser) -> None:
    """--data and its columns, from :class:`~xlspt.data.DataConfig` (the run commands get them from the run config)."""
    import dataclasses

    from .data import DataConfig

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(DataConfig)}
    p.add_argument("--data", metavar="PATH", help=helps["source"])
    for name in ("text_column", "label_column", "language_column", "split_column"):
        default = getattr(DataConfig(), name)
        p.add_argument(flag(name), dest=name, metavar="NAME", default=default,
                       help=helps[name] + (f" (default: {default})" if default else ""))


def _add_langs(p: argparse.ArgumentParser, default: str = "52") -> None:
    p.add_argument("--langs", default=default, help="target languages: 52 (the study's; for data other than SIB-200: all of its languages), all, or codes such as "
                        "eng_Latn,fra_Latn (default: %(default)s)")


def _add_run_preset(p: argparse.ArgumentParser) -> None:
    from .study.spec import RUN_PRESETS

    p.add_argument("--preset", choices=RUN_PRESETS,
                   help="start from a tuned configuration (flags given override it): quality (an ensemble of prompts with "
                        "content-free calibration: no target-language data), quality-unlabeled (the same, calibrated on each "
                        "language's unlabeled texts)")


def _add_calibration(p: argparse.ArgumentParser, unlabeled: str) -> None:
    from .calibration import Protocol

    p.add_argument("--calibration", choices=[e.value for e in Protocol], default=None,
                   help="zero-shot (the study's, no correction); content-free (protocol a: no target-language data); "
                        f"unlabeled (protocol b: the label prior of {unlabeled}); batch (protocol b: of the texts "
                        "classified). Default: what the prompt was saved with")
    p.add_argument("--standardize", action="store_true",
                   help="with --calibration unlabeled or batch: first move each read-out dimension to the training "
                        "language's mean and spread (saved with the prompt), estimated on the same unlabeled texts")


def _add_device(p: argparse.ArgumentParser) -> None:
    from .models.loading import DEVICES

    p.add_argument("--device", default="auto", metavar="{" + ",".join(DEVICES) + ",cuda:N}",
                   help="where the model runs: auto = a CUDA GPU, else Apple's MPS, else the CPU (default: %(default)s); recorded with the results")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice); recorded with the results")


def _set_threads(args) -> None:
    from .errors import XlsptError

    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise XlsptError(f"--threads must be at least 1 (got {threads})")
        import torch

        torch.set_num_threads(threads)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _add_engine(p: argparse.ArgumentParser, dtype_default: str | None) -> None:
    """--dtype and --engine for commands that load a saved prompt (defaults: the prompt's own dtype)."""
    from .engine import ENGINES
    from .models import DTYPES

    shown = dtype_default or "the dtype the prompt was trained in"
    p.add_argument("--dtype", choices=DTYPES, default=dtype_default,
                   help=f"model weights: auto = bfloat16 where the hardware runs it faster (default: {shown})")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto/cached: text states computed once, prompt steps run n positions; naive: full pass every step (default: %(default)s)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the Python code a Hub model repository ships (off: it would run with your permissions)")


#: RunConfig fields the `train` command has no use for (it evaluates nothing).
_TRAIN_ONLY_SKIPS = ("langs", "save_model")
_GROUPS = {
    "model and prompt": ("model", "trust_remote_code", "dtype", "engine", "prompt_length", "reparam_hidden", "label_words", "allow_subword_labels", "special_tokens"),
    "data and training": ("data", "text_column", "label_column", "language_column", "split_column", "train_lang", "shots", "epochs", "lr", "batch_size", "seed", "max_length", "freeze", "model_lr", "save_model", "langs"),
    "ensembles and calibration": ("ensemble", "shared_sample", "calibration", "standardize"),
    "method": ("method",),
}


_METAVARS = {"model": "NAME", "data": "PATH", "text_column": "NAME", "label_column": "NAME", "language_column": "NAME",
             "split_column": "NAME", "langs": "LANGS", "label_words": "WORDS", "train_lang": "LANG",
             "reparam_hidden": "H", "model_lr": "X"}


def flag(field_name: str) -> str:
    """The command-line flag of a run-config field: ``prompt_length`` -> ``--prompt-length``."""
    return "--" + field_name.replace("_", "-")


def _add_run_config(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = (), title: str | None = None) -> None:
    """One flag per :class:`~xlspt.study.config.RunConfig` field, with its help and default from the config.

    Flags not given stay out of the namespace (``SUPPRESS``), so only what the user typed overrides
    the config's defaults (or a sweep spec's values).
    """
    import dataclasses

    from .study.config import ENUM_FIELDS, REFERENCE_MODEL_LR, RunConfig

    defaults = RunConfig()
    for group_title, names in _GROUPS.items():
        g = p.add_argument_group(title or group_title)
        for f in dataclasses.fields(RunConfig):
            if f.name not in names or f.name in skip:
                continue
            default = getattr(defaults, f.name)
            default = default.value if hasattr(default, "value") else default
            text = f.metadata["help"] + ("" if default in (None, False) else f" (default: {default})")
            kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))
            if f.type == "bool":
                p_args = [flag(f.name)]
                if f.name == "freeze":
                    kwargs["help"] = text.replace("%", "%%") + "; --train-model is --no-freeze"
                g.add_argument(*p_args, action=argparse.BooleanOptionalAction, **kwargs)
                if f.name == "freeze":
                    g.add_argument("--train-model", dest="freeze", action="store_false", default=argparse.SUPPRESS,
                                   help=argparse.SUPPRESS)
                continue
            if f.name in ENUM_FIELDS:
                kwargs["choices"] = [e.value for e in ENUM_FIELDS[f.name]]
            elif f.type == "int":
                kwargs["type"] = int
            elif f.type == "float":
                kwargs["type"] = float
            elif f.name == "model_lr":
                kwargs["type"] = lambda text: text if text == REFERENCE_MODEL_LR else float(text)
            if "choices" not in kwargs:
                kwargs["metavar"] = _METAVARS.get(f.name) or {"int": "N", "float": "X"}.get(f.type, "VALUE")
            g.add_argument(flag(f.name), **kwargs)


def _run_config(args, base=None):
    """The run config from the flags the user gave, over ``base``: a ``--preset``, else RunConfig's defaults
    (the flags win, then the preset, then the defaults)."""
    from .study.config import RunConfig
    from .study.spec import run_preset

    if base is None and getattr(args, "preset", None):
        base = run_preset(args.preset)
    given = {name: getattr(args, name) for name in RunConfig.field_names() if hasattr(args, name)}
    return (base or RunConfig()).replace(**given) if given else (base or RunConfig())


def build_parser() -> argparse.ArgumentParser:
    from .study.spec import PRESETS

    parser = argparse.ArgumentParser(
        prog="xlspt",
        description="Cross-lingual soft prompt tuning: train a prompt on English examples (SIB-200 or your own data), classify text in other languages.",
    )
    parser.add_argument("--version", action="version", version=f"xlspt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train a prompt on English and evaluate it on target languages")
    _add_run_preset(p)
    _add_run_config(p)
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<model>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    _add_device(p)
    _add_common(p)

    p = sub.add_parser("train", help="train a prompt and save it (no evaluation)")
    _add_run_preset(p)
    _add_run_config(p, skip=_TRAIN_ONLY_SKIPS)
    p.add_argument("--resume", metavar="PATH", help="continue training from a saved prompt (its length and reparameterization network); the optimizer starts afresh")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<model>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the prompt of an earlier run in --out")
    _add_device(p)
    _add_common(p)

    p = sub.add_parser("label-words", help="choose label words on the training language's dev split")
    p.add_argument("--candidate", action="append", required=True, metavar="WORDS",
                   help="a label-word set (as --label-words: seven words in class order or class=word pairs, "
                        "word1|word2 for several); repeat for each candidate; 'default' is the model family's")
    _add_run_config(p, skip=(*_TRAIN_ONLY_SKIPS, "label_words", "ensemble", "shared_sample", "calibration", "standardize", "method"))
    _add_common(p)

    p = sub.add_parser("sweep", help="run a grid of configurations into a result store (resumable)")
    p.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="a YAML mapping of run settings to a value or a list of values")
    p.add_argument("--preset", choices=PRESETS,
                   help="a built-in spec: smoke (machinery check, <20 min on 2 CPU cores), gemma (the study's grid on the "
                        "embedded model), paper (the study's XGLM/BLOOM grid; needs the Hub), quality and quality-unlabeled (one tuned run each)")
    p.add_argument("--store", required=True, metavar="DIR", help="result store: one folder per run, kill-safe")
    p.add_argument("--status", action="store_true", help="list what is done, running, failed and left, and exit")
    p.add_argument("--json", action="store_true", help="with --status: one JSON object of counts")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: Ray tasks on a local instance or --ray-address (default: %(default)s)")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (e.g. ray://head:10001 or auto)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: a GPU when there is one)")
    _add_run_config(p, title="override the spec (one value each)")
    _add_common(p)

    p = sub.add_parser("report", help="tables, figures and the study's findings from a result store")
    p.add_argument("--store", required=True, metavar="DIR", help="the result store of an `xlspt sweep`")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write runs.csv, the tables, figures and report.md")

    p = sub.add_parser("evaluate", help="evaluate saved prompts on target languages")
    p.add_argument("--prompt", required=True, action="append", metavar="PATH",
                   help="a run directory, a prompt .safetensors file or a Hub repository (owner/name); repeat to score several "
                        "prompts from one pass over the text")
    p.add_argument("--model", help="model to use (default: the one the prompt was trained with)")
    _add_langs(p)
    _add_data(p)
    p.add_argument("--out", metavar="DIR", help="write results.csv (with a prompt column for several prompts) and "
                   "the summary here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--cache-states", action="store_true",
                   help="keep the text states on disk (under the cache directory) so that later evaluations of the same sentences skip the text pass")
    p.add_argument("--vote", action="store_true", help="score the given prompts as one ensemble (mean class log-probabilities)")
    p.add_argument("--members", action="store_true", help="also show each ensemble member's own results (same text pass)")
    _add_calibration(p, "each language's unlabeled texts of --unlabeled-split")
    p.add_argument("--unlabeled-split", default="dev", metavar="SPLIT",
                   help="with --calibration unlabeled: the split whose texts (labels unused) estimate each language's prior (default: %(default)s)")
    _add_engine(p, None)
    _add_device(p)
    _add_common(p)

    p = sub.add_parser("predict", help="classify new text with a saved prompt")
    p.add_argument("--prompt", required=True, metavar="PATH",
                   help="a run directory, a prompt .safetensors file, or a Hub repository (owner/name; $XLSPT_HUB_DIR for a local hub)")
    p.add_argument("--model", help="model to use (default: the one the prompt was trained with)")
    p.add_argument("texts", nargs="*", help="texts to classify; with none, lines are read from --file or standard input")
    p.add_argument("--file", metavar="FILE", help="read one text per line from FILE ('-' for standard input)")
    _add_calibration(p, "the lines of --unlabeled FILE")
    p.add_argument("--unlabeled", metavar="FILE", help="with --calibration unlabeled: unlabeled texts of the same language, one per line")
    p.add_argument("--lang", metavar="CODE", help="the texts' language (e.g. ory_Orya): content-free calibration then uses its script")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table: label, probability and text per line; json: one JSON object per line (text, label, "
                        "probability, top_k); csv: a header and a row per text (default: %(default)s)")
    p.add_argument("--top-k", type=int, metavar="K", help="also give the K most probable labels with their probabilities")
    p.add_argument("--min-confidence", type=float, metavar="P",
                   help="answer 'abstain' when the most probable label's probability is below P")
    _add_engine(p, None)
    _add_device(p)

    p = sub.add_parser("push", help="share a saved prompt folder on the Hugging Face Hub (or a local hub folder), with its model card")
    p.add_argument("--prompt", required=True, metavar="DIR", help="a run directory (prompt.safetensors, prompt.json)")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub repository (created if needed)")
    p.add_argument("--hub", metavar="DIR", help="a local folder standing in for the Hub (default: $XLSPT_HUB_DIR, else the Hub)")
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    p.add_argument("--token", help="Hub token (default: your `hf auth login`)")

    p = sub.add_parser("languages", help="list the languages of the data and the study's 52")
    _add_data(p)
    p.add_argument("--study", action="store_true", help="only the study's 52 target languages (no data needed)")

    sub.add_parser("models", help="list the embedded model, the study's models and the supported architectures")
    debug_help = f"show the traceback of an unexpected error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # also after the command: `xlspt run ... --debug`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (``finally`` blocks, atomic writes)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import ConfigError, XlsptError

    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    _quiet_libraries()
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:  # the library names the config field; the user typed its flag
        print(f"error: {flag(exc.field)}: {exc.problem}", file=sys.stderr)
        return 2
    except XlsptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was finished is kept; nothing half-written was left", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: what was finished is kept; nothing half-written was left", file=sys.stderr)
        return 143
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug of ours or a library's: one line, the traceback only when asked
        if debug:
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: unexpected {exc.__class__.__name__}{': ' + first if first else ''} "
              f"(a bug: rerun with --debug or {DEBUG_ENV}=1 for the traceback, and report it)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _quiet_libraries() -> None:
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------- helpers


def _load_data(args, language: str | None = None):
    """The data of ``--data`` and its column flags (``language``: of a source with no languages of its own)."""
    from .data import DataConfig, TaskData

    names = ("text_column", "label_column", "language_column", "split_column")
    options = {n: getattr(args, n) for n in names if hasattr(args, n)}
    return TaskData.resolve(DataConfig(source=getattr(args, "data", None), **options, **({"language": language} if language else {})))


def _check_langs(args, data) -> list[str]:
    langs = data.target_languages(args.langs)
    for lang in langs:
        data.split(lang, "test")
    return langs


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- commands


def cmd_run(args) -> int:
    from .study import outputs
    from .study.runner import Session, run_one

    from .models.loading import resolve_device

    config = _run_config(args)
    out = outputs.prepare_out_dir(args.out, config.model, args.overwrite)
    _set_threads(args)
    session = Session(device=resolve_device(args.device), progress=not args.quiet, strict=True, class_figures=True)
    data = session.data(config)
    for split in ("train", "dev"):  # read and validated now, before minutes of model loading
        data.split(config.train_lang, split)
    config.label_word_map(data.labels(config.train_lang))
    for lang in data.target_languages(config.langs):
        data.split(lang, "test")  # every target's test split too: a broken one fails now, not after training
    if args.overwrite:
        outputs.clear_files(out)
    record = run_one(config, out, session)
    model = session.model(config)
    fit = (f"best epoch {record.best_epoch} (validation loss {record.best_val_loss:.3f})"
           if record.best_val_loss is not None else "the probe baseline")
    _say(f"model {model.name} ({model.model_type}, {str(model.dtype)[6:]} on {model.device}); "
         f"trained in {record.timings.get('train', 0):.0f} s, {fit}; evaluated in {record.timings.get('evaluate', 0):.0f} s")
    for note in record.notes:
        _say(f"note: {note}")
    import pandas as pd

    sidecar = outputs.PROBE_FILES[1] if config.method.value == "probe" else outputs.PROMPT_FILES[1]
    metadata = json.loads((out / sidecar).read_text(encoding="utf-8"))
    table, _, _ = outputs.results_summary(metadata, pd.DataFrame(record.results))
    print(table)
    _say(f"wrote {out}")
    return 0


def cmd_train(args) -> int:
    from .classifier import PromptClassifier
    from .data import TaskData, resolve_languages
    from .errors import XlsptError
    from .models import load_model
    from .study import outputs

    config = _run_config(args)
    if not config.freeze:
        raise XlsptError("`xlspt train --no-freeze` would save a prompt without the model weights it needs: use `xlspt run --no-freeze`")
    data = TaskData.resolve(config.data_config())
    resolve_languages([config.train_lang], data.languages())
    for split in ("train", "dev"):
        data.split(config.train_lang, split)
    out = outputs.prepare_out_dir(args.out, config.model, args.overwrite, files=(*outputs.PROMPT_FILES, *outputs.PROBE_FILES))
    initial = None
    if args.resume:
        from .artifact import PromptArtifact

        artifact = PromptArtifact.load(args.resume)
    _set_threads(args)
    model = load_model(config.model, dtype=config.dtype.value, device=args.device, trust_remote_code=config.trust_remote_code)
    if args.resume:
        artifact.check_model(model.signature(), model.name)
        if artifact.is_ensemble:
            raise XlsptError(f"--resume {args.resume} is an ensemble of {len(artifact.prompts)} prompts: resume a single prompt")
        initial = artifact.soft_prompt()
    _say(f"model {model.name} ({model.model_type}, hidden size {model.hidden_size}, {str(model.dtype)[6:]} "
         f"on {model.device}); data {data.description}")
    if config.method.value == "probe":
        from .probe import ProbeClassifier

        probe = ProbeClassifier.train(model, data, train_language=config.train_lang, shots=config.shots, seed=config.seed,
                                      max_length=config.max_length, special_tokens=config.special_tokens.value)
        _say(f"fitted the probe baseline in {probe.metadata['train_seconds']:.0f} s (C={probe.metadata['C']})")
        if args.overwrite:
            outputs.clear_files(out)
        print(probe.save(out))
        return 0
    from .train import TrainingDiverged

    try:
        clf = PromptClassifier.train(
            model, data, train_language=config.train_lang, shots=config.shots, prompt=config.prompt_config(),
            training=config.train_config(), label_words=config.label_word_map(data.labels(config.train_lang)),
            allow_first_subtoken=config.allow_subword_labels, initial=initial, progress=not args.quiet,
            ensemble=config.ensemble, shared_sample=config.shared_sample, calibration=config.calibration_config(),
        )
    except TrainingDiverged as exc:
        if exc.best is None or config.ensemble > 1:
            raise
        from .classifier import build_verbalizer
        from .data import sample_few_shot

        verbalizer = build_verbalizer(model, config.label_word_map(data.labels(config.train_lang)),
                                      config.allow_subword_labels, data.labels(config.train_lang))
        if args.overwrite:
            outputs.clear_files(out)
        raise PromptClassifier.keep_best_before_divergence(
            exc, out, model, verbalizer, data, sample_few_shot(data, config.train_lang, config.shots, config.seed),
            config.train_config(), train_language=config.train_lang, shots=config.shots,
            allow_first_subtoken=config.allow_subword_labels) from None
    meta = clf.metadata
    if clf.size > 1:
        seconds = sum(m.get("train_seconds", 0) for m in meta["ensemble"]["members"])
        _say(f"trained {clf.size} prompts in {seconds:.0f} s (seeds {meta['ensemble']['seeds']}, "
             f"{meta['ensemble']['distinct_train_examples']} distinct training examples)")
    else:
        _say(f"trained in {meta['train_seconds']:.0f} s; best epoch {meta['best_epoch']} (validation loss {meta['best_val_loss']:.3f})")
    if args.overwrite:
        outputs.clear_files(out)
    print(clf.save(out))
    return 0


def cmd_evaluate(args) -> int:
    from .calibration import CalibrationConfig
    from .classifier import PromptClassifier, stacked_reference
    from .errors import XlsptError
    from .evaluate import Scorer, evaluate_prompts
    from .study import outputs

    from .artifact import PromptArtifact

    from .hub import resolve_pretrained

    trained_on = PromptArtifact.load(resolve_pretrained(args.prompt[0])).metadata.get("data", {}).get("train_language")
    data = _load_data(args, language=trained_on)  # a source without languages is in the prompt's training language
    langs = _check_langs(args, data)
    out = outputs.prepare_out_dir(args.out, "", args.overwrite, files=outputs.RESULT_FILES) if args.out else None
    _set_threads(args)
    first = PromptClassifier.from_pretrained(args.prompt[0], _model_arg(args, args.prompt[0]), dtype=args.dtype, device=args.device)
    classifiers = [first] + [PromptClassifier.from_pretrained(p, first.model) for p in args.prompt[1:]]
    if any(c.verbalizer != first.verbalizer or c.max_length != first.max_length
           or c.special_tokens != first.special_tokens for c in classifiers):
        raise XlsptError("these prompts use different label words, maximum lengths or tokenization: evaluate them one at a time")
    names = list(args.prompt)
    if args.vote and len(classifiers) > 1:
        classifiers, names = [PromptClassifier.ensemble_of(classifiers)], [f"vote of {len(args.prompt)} prompts"]
    prompts, scorers, labels = [], [], []
    for name, clf in zip(names, classifiers):
        calibration = (CalibrationConfig(args.calibration, unlabeled_split=args.unlabeled_split, standardize=args.standardize)
                       if args.calibration else clf.calibration)
        if calibration.standardize and clf.reference is None:
            clf.fit_reference(data, force=True)
        own = tuple(range(len(prompts), len(prompts) + clf.size))
        prompts += clf.prompts
        scorers.append(Scorer(own, calibration))
        labels.append(name)
        if args.members and clf.size > 1:
            scorers += [Scorer((j,), calibration) for j in own]
            labels += [f"{name} member {i}" for i in range(clf.size)]
    store = None
    if args.cache_states:
        from .engine.store import TextStateStore

        store = TextStateStore(first.model)
    all_results = evaluate_prompts(
        first.model, first.verbalizer, prompts, data, langs, scorers=scorers, reference=stacked_reference(classifiers),
        max_length=first.max_length, engine=args.engine, store=store, special_tokens=first.special_tokens,
        progress=not args.quiet,
    )
    if store is not None:
        _say(f"text states: {store.hits} batches read from {store.root}, {store.misses} computed and stored")
    if out is not None and args.overwrite:
        outputs.clear_files(out, outputs.RESULT_FILES)
    if len(all_results) == 1:
        table, text, summary = outputs.results_summary(classifiers[0].metadata, all_results[0])
        print(table)
        if out is not None:
            outputs.write_results(out, all_results[0], text, summary, figures=True)
    else:
        metadatas = [c.metadata for c in _owners(classifiers, scorers)]
        text, combined, summary = outputs.comparison(labels, metadatas, all_results)
        print(text)
        if out is not None:
            outputs.write_comparison(out, text, combined, summary)
    if out is not None:
        _say(f"wrote {out / outputs.RESULTS_FILE} and {out / outputs.SUMMARY_FILE}")
    return 0


def _model_arg(args, prompt: str):
    """``--model`` as a name, or, with ``--trust-remote-code``, the model loaded here with its remote code allowed."""
    if not args.trust_remote_code:
        return args.model
    from .artifact import PromptArtifact
    from .hub import resolve_pretrained
    from .models import load_model

    trained = PromptArtifact.load(resolve_pretrained(prompt)).metadata
    return load_model(args.model or trained["model"], dtype=args.dtype or trained.get("dtype", "float32"),
                      device=args.device, trust_remote_code=True)


def _owners(classifiers, scorers) -> list:
    """The classifier each scorer's prompts belong to."""
    owner = [c for c in classifiers for _ in c.prompts]
    return [owner[s.members[0]] for s in scorers]


def cmd_label_words(args) -> int:
    from .classifier import choose_label_words
    from .models import load_model
    from .verbalizer import parse_label_words

    from .classifier import build_verbalizer
    from .data import TaskData

    config = _run_config(args)
    data = TaskData.resolve(config.data_config())
    for split in ("train", "dev"):
        data.split(config.train_lang, split)
    labels = data.labels(config.train_lang)
    candidates = [None if c == "default" else parse_label_words(c, labels) for c in args.candidate]
    model = load_model(config.model, dtype=config.dtype.value, trust_remote_code=config.trust_remote_code)
    candidates = [c or build_verbalizer(model, labels=labels).as_dict() for c in candidates]
    best, table = choose_label_words(
        model, data, candidates, train_language=config.train_lang, shots=config.shots, prompt=config.prompt_config(),
        training=config.train_config(), allow_first_subtoken=config.allow_subword_labels, progress=not args.quiet,
    )
    for row in table.itertuples():
        print(f"{100 * row.dev_accuracy:5.1f}%  macro-F1 {100 * row.dev_macro_f1:5.1f}%  {json.dumps(row.label_words, ensure_ascii=False)}")
    words = ",".join(f"{k}={v}" for k, v in best.items())
    _say(f"best on {config.train_lang} dev: --label-words {json.dumps(words, ensure_ascii=False)}")
    return 0


def cmd_sweep(args) -> int:
    import dataclasses

    from .errors import XlsptError
    from .study.config import RunConfig
    from .study.runner import Session
    from .study.spec import load_spec, preset_path
    from .study.store import ResultStore
    from .study.sweep import run_sweep, sweep_status

    if bool(args.spec) == bool(args.preset):
        raise XlsptError("give a sweep spec file or --preset NAME (one of them)")
    overrides = {name: getattr(args, name) for name in RunConfig.field_names() if hasattr(args, name)}
    overrides = {k: (v.value if hasattr(v, "value") else v) for k, v in overrides.items()}
    spec = load_spec(args.spec or preset_path(args.preset), overrides)
    if args.preset:
        spec = dataclasses.replace(spec, source=f"the {args.preset} preset")
    store = ResultStore(args.store, create=not args.status)
    if args.status:
        status = sweep_status(spec, store, Session(device=args.device, progress=False))
        print(json.dumps(status.as_json()) if args.json else status.table())
        return 0
    status = run_sweep(spec, store, executor=args.executor, ray_address=args.ray_address,
                       retry_failed=args.retry_failed, device=args.device, progress=not args.quiet)
    print(status.table())
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


def cmd_predict(args) -> int:
    from .calibration import CalibrationConfig, Protocol
    from .classifier import PromptClassifier
    from .errors import XlsptError

    if args.top_k is not None and args.top_k < 1:
        raise XlsptError(f"--top-k must be at least 1 (got {args.top_k})")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise XlsptError(f"--min-confidence must be a probability between 0 and 1 (got {args.min_confidence})")
    calibration = CalibrationConfig(args.calibration, standardize=args.standardize) if args.calibration else None
    if args.standardize and not args.calibration:
        raise XlsptError("--standardize goes with --calibration unlabeled or batch: add one")
    unlabeled = [t for t in _read_lines(args.unlabeled, "--unlabeled") if t.strip()] if args.unlabeled else []
    if args.unlabeled and not unlabeled:
        raise XlsptError(f"--unlabeled {args.unlabeled} holds no text: give unlabeled texts of the language, one per line")
    if not args.texts and not args.file and sys.stdin.isatty():
        raise XlsptError("no text to classify: pass texts as arguments, --file FILE, or lines on standard input")
    _set_threads(args)
    from .probe import PROBE_SIDECAR, ProbeClassifier

    if (Path(args.prompt) / PROBE_SIDECAR).is_file():  # the probe baseline of `xlspt run --method probe`
        if calibration is not None or unlabeled:
            raise XlsptError("the probe baseline takes no calibration: drop --calibration and --unlabeled")
        from .models import load_model

        meta = json.loads((Path(args.prompt) / PROBE_SIDECAR).read_text(encoding="utf-8"))
        probe = ProbeClassifier.load(args.prompt, load_model(args.model or meta["model"], dtype=args.dtype or meta.get("dtype", "float32"),
                                                             device=args.device))
        count = _stream_predictions(args, probe.scores, probe.labels, PREDICT_CHUNK)
        _say(f"probe baseline; {count} texts; labels {', '.join(probe.labels)}")
        return 0
    clf = PromptClassifier.from_pretrained(args.prompt, _model_arg(args, args.prompt), dtype=args.dtype, device=args.device)
    protocol = (calibration or clf.calibration)
    if protocol.protocol is Protocol.UNLABELED and not unlabeled:
        raise XlsptError(f"calibration {protocol.name} needs --unlabeled FILE (unlabeled texts of the same language, one per line)")
    if unlabeled and protocol.protocol is not Protocol.UNLABELED:
        raise XlsptError(f"--unlabeled FILE is read for --calibration unlabeled only (this run uses {protocol.name}): "
                         "add it, or drop --unlabeled")
    if protocol.standardize and clf.reference is None:
        raise XlsptError("--standardize needs the training language's statistics, which this prompt was not saved with: "
                         "train it with --standardize, or calibrate without it")
    # Calibrating on the batch (or one prior for all) needs every text first; otherwise answers stream in chunks.
    whole = protocol.protocol in (Protocol.BATCH, Protocol.UNLABELED)
    scores = lambda chunk: clf.scores(chunk, calibration=calibration, unlabeled_texts=unlabeled,  # noqa: E731
                                      language=args.lang, engine=args.engine)
    count = _stream_predictions(args, scores, clf.verbalizer.labels, None if whole else PREDICT_CHUNK)
    _say(f"protocol: {protocol.name}; {count} texts; labels {', '.join(clf.verbalizer.labels)}")
    return 0


#: Texts scored per step when predictions stream (a batch-calibrated run reads all first).
PREDICT_CHUNK = 64


def _stream_predictions(args, scores, labels, chunk_size: int | None) -> int:
    """Score the texts ``chunk_size`` at a time with ``scores`` (texts -> ``[N, C]``) and write each chunk's answers."""
    from .errors import XlsptError
    from .evaluate import scored_predictions

    writer, count = _PredictionWriter(args.format, args.top_k is not None), 0
    for chunk in _text_chunks(args, size=chunk_size):
        writer.write(scored_predictions(chunk, scores(chunk), labels, top_k=args.top_k, min_confidence=args.min_confidence))
        count += len(chunk)
    if not count:
        raise XlsptError("no text to classify: pass texts as arguments, --file FILE, or lines on standard input")
    return count


def _text_chunks(args, size: int | None):
    """Non-empty texts from the arguments, ``--file`` or standard input, ``size`` at a time (all at once for ``None``)."""
    import itertools

    if args.file and args.file != "-":
        rest = iter(_read_lines(args.file, "--file"))
    elif args.file == "-" or not args.texts:
        rest = (line.rstrip("\r\n") for line in sys.stdin)
    else:
        rest = iter(())
    lines = itertools.chain(args.texts, rest)
    chunk = []
    for line in lines:
        if line.strip():
            chunk.append(line)
            if size is not None and len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class _PredictionWriter:
    """Writes scored predictions as a table (label, probability, text), JSON Lines or CSV, flushing each chunk."""

    def __init__(self, fmt: str, top_k: bool) -> None:
        import csv

        self.fmt, self.top_k = fmt, top_k
        self.csv = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["text", "label", "probability", *(["top_k"] if top_k else [])])

    def write(self, table) -> None:
        for row in table.to_dict(orient="records"):
            if self.fmt == "json":
                row["probability"] = round(row["probability"], 6)
                for item in row.get("top_k", []):
                    item["probability"] = round(item["probability"], 6)
                print(json.dumps(row, ensure_ascii=False))
            elif self.csv is not None:
                top = [json.dumps([[t["label"], round(t["probability"], 6)] for t in row["top_k"]], ensure_ascii=False)] if self.top_k else []
                self.csv.writerow([row["text"], row["label"], f"{row['probability']:.6f}", *top])
            else:
                top = ["  ".join(f"{t['label']}:{t['probability']:.3f}" for t in row["top_k"])] if self.top_k else []
                print("\t".join([row["label"], f"{row['probability']:.3f}", *top, row["text"]]))
        sys.stdout.flush()


def _read_lines(path: str, option: str) -> list[str]:
    from .errors import XlsptError

    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise XlsptError(f"cannot read {option} {path}: {exc.__class__.__name__}: pass a UTF-8 text file") from None


def cmd_push(args) -> int:
    import shutil
    import tempfile

    import pandas as pd

    from .artifact import PROMPT_FILE, SIDECAR_FILE
    from .errors import XlsptError
    from .files import write_text_atomic
    from .hub import model_card, push_folder
    from .study import outputs

    folder = Path(args.prompt)
    if not (folder / PROMPT_FILE).is_file() or not (folder / SIDECAR_FILE).is_file():
        raise XlsptError(f"--prompt {folder} is not a saved prompt folder (no {PROMPT_FILE} and {SIDECAR_FILE}): "
                         "pass the --out folder of `xlspt run` or `xlspt train`")
    try:
        metadata = json.loads((folder / SIDECAR_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XlsptError(f"{folder / SIDECAR_FILE} is not readable JSON ({exc.__class__.__name__}): save the prompt again") from None
    results = pd.read_csv(folder / outputs.RESULTS_FILE) if (folder / outputs.RESULTS_FILE).is_file() else None
    with tempfile.TemporaryDirectory(prefix="xlspt-push-") as staging:
        for name in (PROMPT_FILE, SIDECAR_FILE, outputs.RESULTS_FILE, outputs.PER_CLASS_FILE, outputs.SUMMARY_FILE):
            if (folder / name).is_file():
                shutil.copy2(folder / name, Path(staging) / name)
        write_text_atomic(Path(staging) / outputs.CARD_FILE, model_card(metadata, results, repo_id=args.repo))
        where = push_folder(staging, args.repo, hub=args.hub, token=args.token, private=args.private)
    print(where)
    _say(f"pushed {folder} to {args.repo}: load it with `xlspt predict --prompt {args.repo}` "
         f"or xlspt.PromptClassifier.from_pretrained({args.repo!r})")
    return 0


def cmd_languages(args) -> int:
    from .data import language_info, study_languages

    study = {lang.code for lang in study_languages()}
    if args.study:
        codes = [lang.code for lang in study_languages()]
        available = None
    else:
        data = _load_data(args)
        codes = data.languages()
        available = data.description
    print(f"{'code':<10} {'name':<22} {'study':>5} {'XGLM %':>7} {'BLOOM %':>7}")
    for code in codes:
        info = language_info(code)
        xglm = f"{100 * info.xglm_share:.2f}" if info.xglm_share is not None else "-"
        bloom = f"{100 * info.bloom_share:.2f}" if info.bloom_share is not None else "-"
        print(f"{code:<10} {(info.name or '')[:22]:<22} {'yes' if code in study else '':>5} {xglm:>7} {bloom:>7}")
    where = f" in {available}" if available else ""
    print(f"{len(codes)} languages{where}; 'study' marks the 52 of --langs 52; shares are of pretraining data", file=sys.stderr)
    return 0


def cmd_models(args) -> int:
    from .models import ADAPTERS, EMBEDDED_DEFAULT, EMBEDDED_MODELS, STUDY_MODELS

    print("Embedded (no download):")
    for name, text in EMBEDDED_MODELS.items():
        print(f"  {name:<24} {text}{'  [default]' if name == EMBEDDED_DEFAULT else ''}")
    print("The study's models (Hugging Face Hub):")
    for name, text in STUDY_MODELS.items():
        print(f"  {name:<24} {text}")
    print("Any causal LM of these architectures (Hub id, local directory or .gguf file), with default label words:")
    for adapter in ADAPTERS:
        words = ", ".join(json.dumps(w) for w in adapter.label_words.values())
        print(f"  {adapter.family:<8} model_type {', '.join(adapter.model_types):<18} {words}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "sweep": cmd_sweep,
    "label-words": cmd_label_words,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "push": cmd_push,
    "languages": cmd_languages,
    "models": cmd_models,
}

if __name__ == "__main__":
    sys.exit(main())
