"""Imports that a page kernel pays for at start but rarely uses, put off until first use.

Why: every page and every student notebook starts a fresh kernel, and ``make test`` starts about
fifty. ``import altair`` imports jsonschema, which imports ``rfc3987_syntax`` when it is installed
(JupyterLab's dependencies install it), and that module compiles a Lark grammar of IRIs at import:
about 1 s of the 3.5-4 s a page's imports take. Altair's schemas hold no IRI format, so the
grammar is needed only if someone validates an IRI with jsonschema in the same process; then it
is compiled on that first call, and the check behaves exactly as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_NAME = "rfc3987_syntax"


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for ``rfc3987_syntax`` until something other than
    ``is_valid_syntax`` is read from it; any such read imports the real module."""

    def __getattr__(self, name: str):
        if name == "is_valid_syntax":
            return _is_valid_syntax
        if name.startswith("__"):  # the import system asks for __path__ and the like: not a use
            raise AttributeError(name)
        return getattr(_real(), name)


def _real() -> types.ModuleType:
    mod = sys.modules.get(_NAME)
    if isinstance(mod, _Deferred):
        del sys.modules[_NAME]
        mod = importlib.import_module(_NAME)
    return mod


def _is_valid_syntax(*args, **kwargs):
    """``rfc3987_syntax.is_valid_syntax``, compiling its grammar on the first call."""
    return _real().is_valid_syntax(*args, **kwargs)


def defer_iri_grammar() -> None:
    """Put off ``rfc3987_syntax``'s grammar until first use (nothing if it is imported already or absent)."""
    if _NAME in sys.modules or importlib.util.find_spec(_NAME) is None:
        return
    sys.modules[_NAME] = _Deferred(_NAME, __doc__)
