"""The library's error for a value its caller got wrong: :class:`InputError`.

In a module of its own, below everything, so that :mod:`.models` can raise it without importing
:mod:`.checks` (which imports :mod:`.models`); :mod:`.checks` re-exports it.
"""

__all__ = ["InputError"]


class InputError(ValueError):
    """A value given to the library (or to the command line) is not allowed; the message says which
    value, what it was and what is allowed.

    Why a class of its own: the command line must tell the user's mistake (exit 2, one line) from a
    fault of the library (exit 1, with its traceback); every ``ValueError`` used to count as the
    user's, so a bug was reported to the user as their own bad input.
    """
