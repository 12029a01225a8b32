"""The one exception type users see.

Every problem a user can fix (bad option, missing file, wrong model for a prompt)
raises :class:`XlsptError` with a one-line message that names the problem and the
fix; the command line prints that line and exits non-zero, without a traceback.
"""


class XlsptError(Exception):
    """A problem with the user's input or environment, with a message saying how to fix it."""


class ConfigError(XlsptError):
    """A bad value of one configuration field.

    The message names the field (``prompt_length: must be at least 1``); the command line
    shows the field's flag instead (``--prompt-length: must be at least 1``).
    """

    def __init__(self, field_name: str, problem: str):
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a one-line error quotes."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
