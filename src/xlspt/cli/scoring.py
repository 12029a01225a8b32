"""The commands that score saved classifiers: ``evaluate``, ``predict``, ``serve`` and ``label``, and how predictions
are printed."""

from __future__ import annotations

import logging
import os
import sys

import pandas as pd

from ..errors import XlsptError
from ..pipeline import prediction_records
from .flags import (CALIBRATION, DATA, LOADING, add_config_flags, add_dataclass_flags, add_device,
                   calibration_config, calibration_help, data_config, load_options, read_lines, use_threads)

logger = logging.getLogger(__name__)


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate saved prompts on target languages")
    p.add_argument("--prompt", required=True, action="append", metavar="PATH", help="a run directory, a prompt .safetensors "
                   "file or a Hub repository (owner/name); repeat to score several prompts from one pass over the text")
    add_config_flags(p, {**LOADING, **DATA, "limit": None, **CALIBRATION}, defaults={**LOADING, **CALIBRATION},
                     helps=calibration_help("each language's unlabeled texts of --unlabeled-split"))
    p.add_argument("--out", metavar="DIR", help="write results.csv (with a prompt column for several prompts) and the summary here (default: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--cache-states", action="store_true", help="keep the text states on disk (under the cache directory) so that later evaluations of the same sentences skip the text pass")
    p.add_argument("--vote", action="store_true", help="score the given prompts as one ensemble (mean class log-probabilities)")
    p.add_argument("--members", action="store_true", help="also show each ensemble member's own results (same text pass)")
    p.add_argument("--unlabeled-split", default="dev", metavar="SPLIT", help="with --calibration unlabeled: the split "
                   "whose texts (labels unused) estimate each language's prior (default: %(default)s)")
    add_device(p, recorded="recorded in summary.json with --out")


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify new text with a saved prompt")
    p.add_argument("--prompt", required=True, metavar="PATH", help="a run directory, a prompt .safetensors file, or a Hub repository (owner/name; $XLSPT_HUB_DIR for a local hub)")
    p.add_argument("texts", nargs="*", help="texts to classify; with none, lines are read from --file or standard input")
    p.add_argument("--file", metavar="FILE", help="read one text per line from FILE ('-' for standard input)")
    add_config_flags(p, {**LOADING, **CALIBRATION}, defaults={**LOADING, **CALIBRATION},
                     helps=calibration_help("the lines of --unlabeled FILE"))
    p.add_argument("--unlabeled", metavar="FILE", help="with --calibration unlabeled: unlabeled texts of the same language, one per line")
    p.add_argument("--lang", metavar="CODE", help="the texts' language (e.g. ory_Orya): content-free calibration then uses its script")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="table: label, probability and "
                   "text per line; json: one JSON object per line (text, label, probability, top_k); csv: a header and a row per text (default: %(default)s)")
    p.add_argument("--top-k", type=int, metavar="K", help="also give the K most probable labels with their probabilities")
    p.add_argument("--min-confidence", type=float, metavar="P", help="answer 'abstain' when the most probable label's probability is below P")
    add_device(p)


def add_serve(sub) -> None:
    from ..serve.config import API_KEY_ENV, ServeConfig

    p = sub.add_parser("serve", help="serve saved prompts, ensembles and probes over HTTP from one loaded model")
    p.add_argument("--task", action="append", default=[], metavar="NAME=PATH", help="a task: a run folder or a Hub "
                   "repository (owner/name) under a name; repeat for several")
    p.add_argument("--tasks", metavar="DIR", help="one task per run folder inside DIR, named after its folder")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on every request but /healthz and /readyz (default: ${API_KEY_ENV}, "
                        "which keeps the key out of the process list)")
    add_dataclass_flags(p.add_argument_group("listening and batching"), ServeConfig)
    add_config_flags(p, {k: v for k, v in LOADING.items() if k != "engine"}, defaults=LOADING)
    add_device(p)


def add_label(sub) -> None:
    from ..corpus import LabelConfig

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
    add_dataclass_flags(p.add_argument_group("reading, scoring and writing"), LabelConfig,
                        {"text_column": "COLUMN", "id_column": "COLUMN", "lang_column": "COLUMN", "lang": "CODE",
                          "top_k": "K", "min_confidence": "P", "workers": "N", "chunk_rows": "N"})
    add_config_flags(p, {k: v for k, v in LOADING.items() if k != "engine"}, defaults=LOADING)
    add_device(p)


def cmd_evaluate(args) -> int:
    from .. import pipeline

    use_threads(getattr(args, "threads", None))
    options = pipeline.EvaluateOptions(vote=args.vote, members=args.members, calibration=calibration_config(args),
                                       engine=getattr(args, "engine", "auto"), cache_states=args.cache_states,
                                       progress=not args.quiet, limit=getattr(args, "limit", 0))
    table, written = pipeline.evaluate(args.prompt, data_config(args), getattr(args, "langs", "52"), args.out,
                                      overwrite=args.overwrite, load=load_options(args), options=options)
    print(table)
    if written:
        logger.info(f"wrote {' and '.join(map(str, written))}")
    return 0


def cmd_predict(args) -> int:
    import itertools

    from .. import pipeline

    options = pipeline.PredictOptions(
        calibration=calibration_config(args), language=args.lang, top_k=args.top_k, min_confidence=args.min_confidence,
        engine=getattr(args, "engine", "auto"),
        unlabeled=[t for t in read_lines(args.unlabeled, "--unlabeled") if t.strip()] if args.unlabeled else [])
    if args.unlabeled and not options.unlabeled:
        raise XlsptError(f"--unlabeled {args.unlabeled} holds no text: give unlabeled texts of the language, one per line")
    if not args.texts and not args.file and sys.stdin.isatty():
        raise XlsptError("no text to classify: pass texts as arguments, --file FILE, or lines on standard input")
    use_threads(getattr(args, "threads", None))
    lines = (iter(read_lines(args.file, "--file")) if args.file and args.file != "-" else
             (line.rstrip("\r\n") for line in sys.stdin) if args.file == "-" or not args.texts else iter(()))
    frames, described, labels = pipeline.predict(args.prompt, itertools.chain(args.texts, lines), load=load_options(args),
                                                 options=options)
    writer = PredictionWriter(args.format, args.top_k is not None)
    count = sum(writer.write(frame) for frame in frames)
    logger.info(f"{described}; {count} texts; labels {', '.join(labels)}")
    return 0


def cmd_serve(args) -> int:
    from ..serve import ServeConfig, serve, task_sources

    config = ServeConfig(**{name: getattr(args, name) for name in ServeConfig.field_names()})
    use_threads(getattr(args, "threads", None))
    serve(task_sources(args.task, args.tasks), config, load=load_options(args), api_key=args.api_key)
    return 0


def cmd_label(args) -> int:
    from ..corpus import LabelConfig, label_corpus
    from ..serve import task_sources

    config = LabelConfig(**{name: getattr(args, name) for name in LabelConfig.field_names()})
    use_threads(getattr(args, "threads", None))
    outcome = label_corpus(args.input, task_sources(args.task, args.tasks), args.output, config, load=load_options(args), overwrite=args.overwrite,
                           ray_address=args.ray_address, progress=not args.quiet)
    before = outcome.shards - outcome.labelled_now
    print(f"{outcome.rows} rows of {outcome.shards} shards labelled in {outcome.output} "
          f"({outcome.rows_now} now in {outcome.seconds:.0f} s{f'; {before} shards before' if before else ''}); "
          f"manifest: {outcome.output / 'manifest.json'}")
    return 0


class PredictionWriter:
    """Writes scored predictions to ``stream`` as a table (label, probability, text), JSON Lines or CSV,
    flushing each chunk."""

    def __init__(self, fmt: str, top_k: bool, stream=None) -> None:
        import csv

        self.fmt, self.top_k, self.stream = fmt, top_k, stream or sys.stdout
        self.csv = csv.writer(self.stream, lineterminator="\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["text", "label", "probability", *(["top_k"] if top_k else [])])

    def write(self, table: pd.DataFrame) -> int:
        for row in prediction_records(table) if self.fmt == "json" else table.to_dict(orient="records"):
            print(self._line(row), file=self.stream) if self.csv is None else self._csv_row(row)
        self.stream.flush()
        return len(table)

    def _line(self, row: dict) -> str:
        import json

        if self.fmt == "json":
            return json.dumps(row, ensure_ascii=False)
        top = ["  ".join(f"{t['label']}:{t['probability']:.3f}" for t in row["top_k"])] if self.top_k else []
        return "\t".join([row["label"], f"{row['probability']:.3f}", *top, row["text"]])

    def _csv_row(self, row: dict) -> None:
        import json

        top = [json.dumps([[t["label"], round(t["probability"], 6)] for t in row["top_k"]], ensure_ascii=False)] if self.top_k else []
        self.csv.writerow([row["text"], row["label"], f"{row['probability']:.6f}", *top])
