"""The ``xlspt`` command line: parse, call one library function (:mod:`xlspt.pipeline`, the study), print.

Every user-fixable problem ends in one ``error: ...`` line on stderr and exit status 2;
an interrupt ends with status 130. Output files appear only when complete. The commands live by what they do:
:mod:`.training` (run, train, label-words, self-train), :mod:`.study` (sweep, report), :mod:`.scoring` (evaluate,
predict, serve, label), :mod:`.sharing` (push) and :mod:`.listing` (languages, models); :mod:`.flags` makes their
flags from the configs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Sequence

from .._version import __version__
from . import listing, scoring, sharing, study, training
from .flags import flag

DEBUG_ENV = "XLSPT_DEBUG"

#: Each command: how its parser is added and what runs it, in the order ``xlspt --help`` lists them.
COMMAND_TABLE = {
    "run": (training.add_run, training.cmd_run),
    "train": (training.add_train, training.cmd_train),
    "label-words": (training.add_label_words, training.cmd_label_words),
    "sweep": (study.add_sweep, study.cmd_sweep),
    "report": (study.add_report, study.cmd_report),
    "evaluate": (scoring.add_evaluate, scoring.cmd_evaluate),
    "predict": (scoring.add_predict, scoring.cmd_predict),
    "self-train": (training.add_self_train, training.cmd_self_train),
    "push": (sharing.add_push, sharing.cmd_push),
    "serve": (scoring.add_serve, scoring.cmd_serve),
    "label": (scoring.add_label, scoring.cmd_label),
    "languages": (listing.add_languages, listing.cmd_languages),
    "models": (listing.add_models, listing.cmd_models),
}
COMMANDS = {name: run for name, (_, run) in COMMAND_TABLE.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlspt", description="Cross-lingual soft prompt tuning: train a prompt on English "
                                     "examples (SIB-200 or your own data), classify text in other languages.")
    parser.add_argument("--version", action="version", version=f"xlspt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMAND_TABLE.values():
        add(sub)
    debug_help = f"show the traceback of an unexpected error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # also after the command: `xlspt run ... --debug`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser




class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (``finally`` blocks, atomic writes)."""


def _on_signal(signum, frame) -> None:
    from ..progress import request_stop

    ending = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    request_stop(ending)  # raised again at the next unit of work if this raise is lost (progress.checkpoint)
    raise ending()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    from ..progress import quiet_libraries

    quiet_libraries()
    from ..progress import request_stop

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
    from ..errors import ConfigError, XlsptError

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
