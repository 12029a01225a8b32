"""xlspt's lines of progress and outcome: module loggers under the ``xlspt`` logger.

Every module says its lines through ``logging.getLogger(__name__)``. :func:`install` (run when ``xlspt`` is
imported, as transformers does for its own logger) gives the package logger one handler: level INFO, the message
alone, on the standard error of the moment (a redirected stream or a test's capture included), so the Python API
and the command line say the same lines, and progress bars (:mod:`xlspt.progress`) stay what they are. The lines
do not reach the root logger; ``logging.getLogger("xlspt").propagate = True`` sends them there too, and
``logging.getLogger("xlspt").setLevel(logging.WARNING)`` keeps only warnings.

Whether a piece of work speaks is its caller's choice, not a parameter handed down every call: ``xlspt train``
fits in silence, a Ray worker's lines would go to nobody, the Python API's ``train`` speaks only with ``progress``
and an ensemble. Such a caller runs the work under :func:`muted`, a scope that holds for the current thread (a
context variable) and hides xlspt's INFO lines from its handler; warnings still show.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from typing import Iterator

ROOT = "xlspt"
_muted: contextvars.ContextVar[bool] = contextvars.ContextVar("xlspt_muted", default=False)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (not the stream of the moment it was made)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the current stream always wins
        pass


class _Unmuted(logging.Filter):
    """Drops INFO lines and below inside :func:`muted`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _muted.get()


def install() -> logging.Logger:
    """Give the ``xlspt`` logger its handler and level once (later calls change nothing); returns it."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_Unmuted())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


@contextlib.contextmanager
def muted(active: bool = True) -> Iterator[None]:
    """Inside, xlspt's INFO lines are not shown (when ``active``); warnings are."""
    token = _muted.set(active or _muted.get())
    try:
        yield
    finally:
        _muted.reset(token)
