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


def quiet_libraries() -> None:
    """Only errors from the libraries xlspt drives (transformers' logs and bars, their warnings): a command's
    output is xlspt's own lines."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
