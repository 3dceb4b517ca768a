"""The one exception type that reaches users as a one-line message."""


class CharlmError(Exception):
    """A problem with the user's input or environment, not a bug in charlm.

    The command line prints ``str(error)`` as a single line on stderr and exits
    with a non-zero status; the message should say what was wrong and what to do.
    """
