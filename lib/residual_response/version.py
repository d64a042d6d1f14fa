"""The library's version, in a module of its own: the provenance of every result records it, and
importing it from the package's ``__init__`` would close an import circle through the engine."""

__version__ = "0.1.0"
