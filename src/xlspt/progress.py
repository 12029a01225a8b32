"""Progress bars that show on a terminal and stay out of log files.

A bar redrawn a few times a second floods a log when standard error is a file or a pipe (a
sweep left running under ``nohup``, CI): there the bars are off and the commands print a
line per finished unit of work instead.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Iterator

from tqdm.auto import tqdm


def interactive() -> bool:
    """Whether standard error is a terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


_stop: type[BaseException] | None = None


def request_stop(exception: type[BaseException] | None) -> None:
    """Record the ending a signal asked for (``None`` clears it); :func:`checkpoint` raises it."""
    global _stop
    _stop = exception


def checkpoint() -> None:
    """Raise the ending a signal asked for, at the end of a unit of work (a language, an epoch, a run).

    A signal handler's exception normally stops the work where it is; Python drops it, though, when the
    handler happens to run inside a finalizer or a C extension's callback, and the work would then go on
    to the end as if no signal had come.
    """
    if _stop is not None:
        raise _stop()


def progress_bar(iterable=None, *, disable: bool = False, **kwargs) -> tqdm:
    """``tqdm`` on a terminal; a silent stand-in otherwise or when ``disable``."""
    return tqdm(iterable, disable=disable or not interactive(), dynamic_ncols=True, **kwargs)


def library_bars_off_terminal() -> None:
    """Off a terminal, no bars from the libraries xlspt drives: transformers' (weight loading), and
    ``datasets``' and ``huggingface_hub``'s (Hub downloads). On a terminal they stay."""
    if interactive():
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


@contextlib.contextmanager
def no_bar_off_terminal() -> Iterator[None]:
    """Off a terminal, standard error held back while a library draws a bar it has no switch for
    (transformers' GGUF conversion calls tqdm directly); what it held is printed, without the bar's
    frames, if the block fails."""
    if interactive():
        yield
        return
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except BaseException:
        lines = [line.rsplit("\r", 1)[-1] for line in held.getvalue().split("\n")]  # splitlines() would split at \r too
        print("\n".join(line for line in lines if line.strip()), file=sys.stderr, flush=True)
        raise


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


def line(message: str) -> None:
    """A line standing in for a progress bar off a terminal (one per finished epoch or language): part of the bar,
    so on standard error whatever the logging settings, and shown wherever the bar would be."""
    print(message, file=sys.stderr, flush=True)
