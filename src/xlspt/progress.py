"""Progress bars that show on a terminal and stay out of log files.

A bar redrawn a few times a second floods a log when standard error is a file or a pipe (a
sweep left running under ``nohup``, CI): there the bars are off and the commands print a
line per finished unit of work instead.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def interactive() -> bool:
    """Whether standard error is a terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_bar(iterable=None, *, disable: bool = False, **kwargs) -> tqdm:
    """``tqdm`` on a terminal; a silent stand-in otherwise or when ``disable``."""
    return tqdm(iterable, disable=disable or not interactive(), dynamic_ncols=True, **kwargs)
