"""Command line: ``residual-response {models,response,induction,regime,section-map,show}``.

Scripts rely on the outputs' exact fields (see each subcommand's help). Bad input exits with
status 2 and one ``error: ...`` line on stderr, and writes nothing. Every result file names its
``kind`` and carries a ``provenance`` block (:mod:`residual_response.provenance`); ``show`` draws
any of them.

- :mod:`.parser`    the arguments: one parser, its types
- :mod:`.output`    the output file: checked, reserved before the model loads, committed last
- :mod:`.estimate`  memory and time of a run, refused beyond what is free or a week
- :mod:`.commands`  one function per command, and :func:`main`
- :mod:`.show`      ``show``: result files as an offline HTML page or a PNG
- :mod:`.show_checks`  what ``show`` checks in a file before it draws it
"""

from .commands import main
from .parser import build_parser

__all__ = ["main", "build_parser"]
