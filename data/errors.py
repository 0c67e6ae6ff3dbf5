"""The one exception type the data layer raises for bad or missing data."""


class DataError(ValueError):
    """A user-facing problem with a data file.

    The message is a single line that names the file (and the key, where one
    is involved) and, where possible, says how to fix it, so that the command
    line can print it as-is instead of a traceback.  It subclasses
    ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """


def describe(exc):
    """``"Type: message"`` of a library exception, folded onto one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())
