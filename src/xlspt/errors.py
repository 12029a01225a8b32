"""The one exception type users see.

Every problem a user can fix (bad option, missing file, wrong model for a prompt)
raises :class:`XlsptError` with a one-line message that names the problem and the
fix; the command line prints that line and exits non-zero, without a traceback.
"""


class XlsptError(Exception):
    """A problem with the user's input or environment, with a message saying how to fix it."""
