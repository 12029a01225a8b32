"""The study's commands: ``sweep`` (a grid of runs into a kill-safe store) and ``report`` (its tables, figures and
findings)."""

from __future__ import annotations

import json
import logging

from .flags import add_config_flags, add_device

logger = logging.getLogger(__name__)


def add_sweep(sub) -> None:
    from ..study.spec import PRESETS

    p = sub.add_parser("sweep", help="run a grid of configurations into a result store (resumable)")
    p.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="a YAML mapping of run settings to a value or a list of values")
    p.add_argument("--preset", choices=PRESETS, help="a built-in spec: smoke (machinery check, <20 min on 2 CPU cores), gemma "
                   "(the study's grid on the embedded model), gemma-shots (its shots axis), gemma-lora (low-rank adapters beside its frozen and whole-model runs), paper (the study's XGLM/BLOOM grid; needs the Hub), quality, quality-lora and quality-unlabeled (one tuned run each)")
    p.add_argument("--store", required=True, metavar="DIR", help="result store: one folder per run, kill-safe")
    p.add_argument("--status", action="store_true", help="list what is done, running, failed and left, and exit")
    p.add_argument("--json", action="store_true", help="with --status: one JSON object of counts")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: in this process; ray: Ray tasks on a local instance or --ray-address (default: %(default)s)")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster (e.g. ray://head:10001 or auto)")
    from ..study.config import RunConfig

    add_config_flags(p, RunConfig.field_names(), title="override the spec (one value each)")
    add_device(p, threads=False, recorded="recorded in each run's record")


def add_report(sub) -> None:
    p = sub.add_parser("report", help="tables, figures and the study's findings from a result store")
    p.add_argument("--store", required=True, metavar="DIR", help="the result store of an `xlspt sweep`")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write runs.csv, the tables, figures and report.md")


def cmd_sweep(args) -> int:
    from ..study.config import RunConfig
    from ..study.sweep import sweep_from

    overrides = {name: getattr(args, name) for name in RunConfig.field_names() if hasattr(args, name)}
    status = sweep_from(args.spec, args.preset, args.store, overrides, status_only=args.status, executor=args.executor,
                        ray_address=args.ray_address, retry_failed=args.retry_failed, device=args.device,
                        progress=not args.quiet)
    print(json.dumps(status.as_json()) if args.status and args.json else status.table())
    return 0


def cmd_report(args) -> int:
    from ..report.study import write_report

    summary = write_report(args.store, args.out)
    for path in summary["files"]:
        print(path)
    for warning in summary["warnings"]:
        logger.warning(f"warning: {warning}")
    logger.info(f"report of {summary['runs']} finished runs ({summary['failed']} failed) in {args.out}")
    return 0
