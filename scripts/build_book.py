#!/usr/bin/env python
"""Build the book: ``python scripts/build_book.py --profile {ci,publish} --out DIR [--only PAGE ...]
[--param KEY=YAML ...] [--skip-html]``.

The build itself is the package :mod:`book_build` (``lib/book_build/``: stage, params, execute,
student, html; its docstring says what a build does); this file is its entry point, and runs this
checkout's copy of it whatever the working folder.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))

from book_build import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
