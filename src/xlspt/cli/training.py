"""The commands that train: ``run``, ``train``, ``label-words`` and ``self-train``."""

from __future__ import annotations

import json
import logging

from ..errors import XlsptError
from .flags import (DATA, LOADING, add_config_flags, add_dataclass_flags, add_device, add_run_command, data_config,
                   load_options, read_lines, recipe_config, run_config, use_threads)

logger = logging.getLogger(__name__)


def add_run(sub) -> None:
    add_device(add_run_command(sub, "run", "train a prompt on English and evaluate it on target languages", out="results"),
               recorded="recorded in the run's record.json and summary.json")


def add_train(sub) -> None:
    p = add_run_command(sub, "train", "train a prompt and save it (no evaluation)", skip=("langs", "save_model", "limit"),
                        out="prompt")
    p.add_argument("--resume", metavar="PATH", help="continue training from a saved prompt (its length and reparameterization network); the optimizer starts afresh")
    add_device(p)


def add_label_words(sub) -> None:
    p = add_run_command(sub, "label-words", "choose label words on the training language's dev split", preset=False,
                        skip=("langs", "save_model", "label_words", "ensemble", "shared_sample", "calibration", "standardize",
                              "prior", "method", "limit", "lora_rank", "lora_alpha", "lora_dropout", "lora_lr",
                              "lora_targets"))
    p.add_argument("--candidate", action="append", default=[], metavar="WORDS",
                   help="a label-word set (as --label-words: seven words in class order or class=word pairs, "
                        "word1|word2 for several); repeat for each candidate; 'default' is the model family's (SIB-200) or the "
                        "words made from the label names; with none, xlspt proposes the default words, the default "
                        "words each with its two nearest tokens in the model's embedding table, and those tokens alone")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def add_self_train(sub) -> None:
    from ..classifiers import SelfTrainingConfig

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
    add_config_flags(p, DATA, defaults=DATA)
    add_dataclass_flags(p.add_argument_group("self-training"), SelfTrainingConfig)
    add_config_flags(p, LOADING, defaults=LOADING)
    add_device(p)


def cmd_run(args) -> int:
    from .. import pipeline

    config, recipe_line = recipe_config(args)
    use_threads(getattr(args, "threads", None))
    out, outcome = pipeline.run(config, args.out, overwrite=args.overwrite, device=args.device, progress=not args.quiet,
                                announce=recipe_line)
    logger.info(outcome.fit)
    for note in outcome.record.notes:
        logger.info(f"note: {note}")
    print(outcome.table)
    logger.info(f"wrote {out}")
    return 0


def cmd_train(args) -> int:
    from .. import pipeline

    config, recipe_line = recipe_config(args)
    use_threads(getattr(args, "threads", None))
    path, summary = pipeline.train(config, args.out, overwrite=args.overwrite, resume=args.resume, device=args.device,
                                   progress=not args.quiet, announce=recipe_line)
    logger.info(summary)
    print(path)
    return 0


def cmd_label_words(args) -> int:
    from .. import pipeline

    config = run_config(args)
    best, table = pipeline.label_words(config, args.candidate, progress=not args.quiet)
    for row in table.itertuples():
        print(f"{100 * row.dev_accuracy:5.1f}%  macro-F1 {100 * row.dev_macro_f1:5.1f}%  {json.dumps(row.label_words, ensure_ascii=False)}")
    words = ",".join(f"{k}={v}" for k, v in best.items())
    logger.info(f"best on {config.train_lang} dev: --label-words {json.dumps(words, ensure_ascii=False)}")
    return 0


def cmd_self_train(args) -> int:
    import dataclasses

    from .. import pipeline
    from ..classifiers import SelfTrainingConfig

    config = SelfTrainingConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SelfTrainingConfig)})
    data = data_config(args)
    if args.unlabeled:
        if not args.lang:
            raise XlsptError("--unlabeled FILE needs --lang CODE: the language its texts are in")
        unlabeled = {args.lang: [t for t in read_lines(args.unlabeled, "--unlabeled") if t.strip()]}
    else:
        unlabeled = pipeline.unlabeled_texts(data, args.langs, args.unlabeled_split)
    use_threads(getattr(args, "threads", None))
    written = pipeline.self_train(args.prompt, args.out, unlabeled, config, data=data, overwrite=args.overwrite,
                                  load=load_options(args), progress=not args.quiet)
    for folder, languages in written:
        logger.info(f"self-trained on {sum(languages.values())} pseudo-labelled texts of {len(languages)} languages "
                    f"(protocol b); wrote {folder}")
    return 0
