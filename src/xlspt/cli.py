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

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.txt"
SUMMARY_JSON = "summary.json"
RUN_FILES = ("prompt.safetensors", "prompt.json", RESULTS_FILE, SUMMARY_FILE, SUMMARY_JSON)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="SIB-200 directory (<lang>/{train,dev,test}.tsv); default $XLSPT_DATA, else the Hub dataset Davlan/sib200")


def _add_langs(p: argparse.ArgumentParser, default: str = "52") -> None:
    p.add_argument("--langs", default=default, help="target languages: 52 (the study's), all, or codes such as eng_Latn,fra_Latn (default: %(default)s)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _add_speed(p: argparse.ArgumentParser, dtype_default: str | None) -> None:
    from .engine import ENGINES
    from .models import DTYPES

    shown = dtype_default or "the dtype the prompt was trained in"
    p.add_argument("--dtype", choices=DTYPES, default=dtype_default,
                   help=f"model weights: auto = bfloat16 on a GPU or an AMX CPU, else float32 (default: {shown})")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto/cached: text states computed once, prompt steps run n positions; naive: full pass every step (default: %(default)s)")


def _add_training(p: argparse.ArgumentParser) -> None:
    from .models import EMBEDDED_DEFAULT

    g = p.add_argument_group("model and prompt")
    g.add_argument("--model", default=EMBEDDED_DEFAULT, help="gemma-3-270m (embedded), a Hub id, a local directory or a .gguf file (default: %(default)s)")
    g.add_argument("--prompt-length", type=_positive_int, default=4, help="number of soft prompt vectors (default: %(default)s)")
    g.add_argument("--reparam-hidden", type=_positive_int, default=None, metavar="H", help="reparameterize the prompt with an MLP of hidden size H (the reference example used 200)")
    g.add_argument("--label-words", metavar="WORDS", help="seven label words in the order geography,science/technology,entertainment,politics,health,travel,sports, or class=word pairs")
    g.add_argument("--allow-subword-labels", action="store_true", help="use the first token of a label word that is several tokens (as the reference code did)")
    g.add_argument("--resume", metavar="PATH", help="continue training from a saved prompt (its length and reparameterization network); the optimizer starts afresh")
    g = p.add_argument_group("data and training")
    g.add_argument("--train-lang", default="eng_Latn", help="language to train on (default: %(default)s)")
    g.add_argument("--shots", type=_positive_int, default=8, help="training examples per class (default: %(default)s)")
    g.add_argument("--epochs", type=_positive_int, default=20, help="(default: %(default)s)")
    g.add_argument("--lr", type=float, default=5e-3, help="AdamW learning rate (default: %(default)s)")
    g.add_argument("--batch-size", type=_positive_int, default=8, help="(default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seeds sampling, initialisation and shuffling (default: %(default)s)")
    g.add_argument("--max-length", type=_positive_int, default=128, help="text + prompt + EOS tokens; text is truncated (default: %(default)s)")
    g.add_argument("--train-model", action="store_true", help="train the model's weights too (no model freezing); the weights are not saved")
    g.add_argument("--model-lr", type=float, default=None, help="learning rate of the model's weights with --train-model (default: --lr)")
    _add_data(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlspt",
        description="Cross-lingual soft prompt tuning: train a prompt on English SIB-200, classify text in other languages.",
    )
    parser.add_argument("--version", action="version", version=f"xlspt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, text in (
        ("run", "train a prompt on English and evaluate it on target languages"),
        ("train", "train a prompt and save it (no evaluation)"),
    ):
        p = sub.add_parser(name, help=text)
        _add_training(p)
        if name == "run":
            _add_langs(p)
        p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<model>-<time>)")
        p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
        _add_speed(p, "auto")
        _add_common(p)

    p = sub.add_parser("evaluate", help="evaluate saved prompts on target languages")
    p.add_argument("--prompt", required=True, action="append", metavar="PATH",
                   help="a run directory or a prompt .safetensors file; repeat to score several prompts from one pass over the text")
    p.add_argument("--model", help="model to use (default: the one the prompt was trained with)")
    _add_langs(p)
    _add_data(p)
    p.add_argument("--out", metavar="DIR", help="write results.csv (with a prompt column for several prompts) and "
                   "the summary here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--cache-states", action="store_true",
                   help="keep the text states on disk (under the cache directory) so that later evaluations of the same sentences skip the text pass")
    _add_speed(p, None)
    _add_common(p)

    p = sub.add_parser("predict", help="classify new text with a saved prompt")
    p.add_argument("--prompt", required=True, metavar="PATH", help="a run directory or a prompt .safetensors file")
    p.add_argument("--model", help="model to use (default: the one the prompt was trained with)")
    p.add_argument("texts", nargs="*", help="texts to classify; with none, lines are read from --file or standard input")
    p.add_argument("--file", metavar="FILE", help="read one text per line from FILE ('-' for standard input)")
    _add_speed(p, None)

    p = sub.add_parser("languages", help="list the languages of the data and the study's 52")
    _add_data(p)
    p.add_argument("--study", action="store_true", help="only the study's 52 target languages (no data needed)")

    sub.add_parser("models", help="list the embedded model, the study's models and the supported architectures")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import XlsptError

    _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except XlsptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was left (files are only ever written whole)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def _quiet_libraries() -> None:
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------- helpers


def _out_dir(args, model_name: str) -> Path:
    if args.out:
        out = Path(args.out)
    else:
        stem = Path(model_name).name.replace("/", "-") or "model"
        out = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    from .errors import XlsptError

    if out.exists() and not out.is_dir():
        raise XlsptError(f"--out {out} is a file: pass a directory")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        raise XlsptError(f"{out} already holds results ({', '.join(existing)}): pass --overwrite or another --out")
    return out


def _clear_previous(out: Path) -> None:
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def _train_args(args):
    from .prompt import PromptConfig
    from .train import TrainConfig
    from .verbalizer import parse_label_words

    prompt = PromptConfig(length=args.prompt_length, reparam_hidden=args.reparam_hidden)
    training = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, max_length=args.max_length,
        freeze_model=not args.train_model, model_lr=args.model_lr, engine=args.engine,
    )
    words = parse_label_words(args.label_words) if args.label_words else None
    return prompt, training, words


def _load_data(args):
    from .data import Sib200

    return Sib200.resolve(args.data)


def _train(args, data):
    """Validate everything cheap first, then load the model and train."""
    from .classifier import PromptClassifier
    from .data import resolve_languages
    from .models import load_model

    prompt, training, words = _train_args(args)
    available = data.languages()
    resolve_languages([args.train_lang], available)
    for split in ("train", "dev"):  # read and validated now, before minutes of model loading
        data.split(args.train_lang, split)
    initial = None
    if args.resume:
        from .artifact import PromptArtifact

        artifact = PromptArtifact.load(args.resume)
    model = load_model(args.model, dtype=args.dtype)
    if args.resume:
        artifact.check_model(model.signature(), model.name)
        initial = artifact.soft_prompt()
    _say(f"model {model.name} ({model.model_type}, hidden size {model.hidden_size}, {str(model.dtype)[6:]} "
         f"on {model.device}); data {data.description}")
    clf = PromptClassifier.train(
        model, data, train_language=args.train_lang, shots=args.shots, prompt=prompt, training=training,
        label_words=words, allow_first_subtoken=args.allow_subword_labels, initial=initial, progress=not args.quiet,
    )
    meta = clf.metadata
    _say(f"trained in {meta['train_seconds']:.0f} s; best epoch {meta['best_epoch']} (validation loss {meta['best_val_loss']:.3f})")
    return clf


def _check_langs(args, data) -> list[str]:
    from .data import resolve_languages

    langs = resolve_languages(args.langs, data.languages())
    for lang in langs:
        data.split(lang, "test")
    return langs


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _report(clf, results, out: Path | None) -> None:
    from .report import aggregate, format_results_table

    train_lang = clf.metadata.get("data", {}).get("train_language")
    groups = aggregate(results, train_lang)
    table = format_results_table(results, groups)
    print(table)
    if out is None:
        return
    meta = clf.metadata
    header = [
        f"xlspt {__version__} - soft prompt on {meta['model']}",
        f"prompt: {meta['prompt_config']}",
        f"training: {meta.get('data', {}).get('shots_per_class')} shots/class of {train_lang}, "
        f"best epoch {meta.get('best_epoch')}, seed {meta.get('train_config', {}).get('seed')}",
        f"label words: {meta['label_words']}",
        "",
    ]
    _write_results(out, results, "\n".join(header) + table + "\n", {"model": meta["model"], "groups": groups})


def _write_results(out: Path, results, summary_text: str, summary: dict) -> None:
    """``results.csv``, ``summary.txt`` and ``summary.json`` in ``out``, each written whole."""
    from .files import write_json_atomic, write_text_atomic, write_with_atomic

    write_with_atomic(out / RESULTS_FILE, lambda tmp: results.to_csv(tmp, index=False, float_format="%.6f"))
    write_text_atomic(out / SUMMARY_FILE, summary_text)
    write_json_atomic(out / SUMMARY_JSON, summary)
    _say(f"wrote {out / RESULTS_FILE} and {out / SUMMARY_FILE}")


def _report_many(names: list[str], classifiers, all_results, out: Path | None) -> None:
    """Each prompt's table, then one row per prompt; in ``out`` the results in long form (a ``prompt`` column)."""
    import pandas as pd

    from .report import aggregate, format_comparison_table, format_results_table

    sections, groups = [], []
    for name, clf, results in zip(names, classifiers, all_results):
        groups.append(aggregate(results, clf.metadata.get("data", {}).get("train_language")))
        sections.append(f"== {name}\n{format_results_table(results, groups[-1])}")
    comparison = f"== comparison\n{format_comparison_table(list(names), groups)}"
    text = "\n\n".join([*sections, comparison])
    print(text)
    if out is None:
        return
    combined = pd.concat([results.assign(prompt=name) for name, results in zip(names, all_results)], ignore_index=True)
    combined = combined[["prompt", *all_results[0].columns]]
    model = classifiers[0].metadata["model"]
    _write_results(out, combined, f"xlspt {__version__} - {len(names)} prompts on {model}\n\n{text}\n", {
        "model": model,
        "prompts": [{"prompt": name, "groups": group} for name, group in zip(names, groups)],
    })


# ---------------------------------------------------------------- commands


def cmd_run(args) -> int:
    data = _load_data(args)
    langs = _check_langs(args, data)
    out = _out_dir(args, args.model)
    clf = _train(args, data)
    if args.overwrite:
        _clear_previous(out)
    if not args.train_model:
        clf.save(out)
    results = clf.evaluate(data, langs, engine=args.engine, progress=not args.quiet)
    _report(clf, results, out)
    return 0


def cmd_train(args) -> int:
    from .errors import XlsptError

    if args.train_model:
        raise XlsptError("`xlspt train --train-model` would save a prompt without the model weights it needs: use `xlspt run --train-model`")
    data = _load_data(args)
    out = _out_dir(args, args.model)
    clf = _train(args, data)
    if args.overwrite:
        _clear_previous(out)
    path = clf.save(out)
    print(path)
    return 0


def cmd_evaluate(args) -> int:
    from .classifier import PromptClassifier
    from .errors import XlsptError
    from .evaluate import evaluate_prompts

    data = _load_data(args)
    langs = _check_langs(args, data)
    out = _out_dir(args, "") if args.out else None
    first = PromptClassifier.load(args.prompt[0], args.model, dtype=args.dtype)
    classifiers = [first] + [PromptClassifier.load(p, first.model) for p in args.prompt[1:]]
    if any(c.verbalizer != first.verbalizer or c.max_length != first.max_length for c in classifiers):
        raise XlsptError("these prompts use different label words or maximum lengths: evaluate them one at a time")
    store = None
    if args.cache_states:
        from .engine.store import TextStateStore

        store = TextStateStore(first.model)
    all_results = evaluate_prompts(
        first.model, first.verbalizer, [c.prompt for c in classifiers], data, langs,
        max_length=first.max_length, engine=args.engine, store=store, progress=not args.quiet,
    )
    if store is not None:
        _say(f"text states: {store.hits} batches read from {store.root}, {store.misses} computed and stored")
    if out is not None and args.overwrite:
        for name in (RESULTS_FILE, SUMMARY_FILE, SUMMARY_JSON):
            (out / name).unlink(missing_ok=True)
    if len(classifiers) == 1:
        _report(first, all_results[0], out)
    else:
        _report_many(args.prompt, classifiers, all_results, out)
    return 0


def cmd_predict(args) -> int:
    from .classifier import PromptClassifier
    from .errors import XlsptError

    texts = list(args.texts)
    if args.file:
        if args.file == "-":
            texts += sys.stdin.read().splitlines()
        else:
            try:
                texts += Path(args.file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise XlsptError(f"cannot read --file {args.file}: {exc.__class__.__name__}: pass a UTF-8 text file") from None
    elif not texts and not sys.stdin.isatty():
        texts = sys.stdin.read().splitlines()
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise XlsptError("no text to classify: pass texts as arguments, --file FILE, or lines on standard input")
    clf = PromptClassifier.load(args.prompt, args.model, dtype=args.dtype)
    for text, label in zip(texts, clf.predict(texts, engine=args.engine)):
        print(f"{label}\t{text}")
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
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "languages": cmd_languages,
    "models": cmd_models,
}

if __name__ == "__main__":
    sys.exit(main())
