"""The book's page layer: what a page runs, shows and says, above the science of the package.

Nothing below this package imports it (a test keeps it so); it alone, with the benchmark
(:mod:`residual_response.bench`), the command line (:mod:`residual_response.cli`) and the book
build, uses pandas and altair.

- :mod:`.page`           what every book page imports, in one line (``residual_response.page`` re-exports it)
- :mod:`.setup`          a page's set-up: offline charts, and no progress bars in its cells (:func:`.setup.quiet_progress`)
- :mod:`.studies`        what a page runs per model: every cross-check of one model, the negative controls of
  a set, the toy model's phase change
- :mod:`.regime_tables`  the regime as the pages show it: curve and window tables, a multi-model sweep
- :mod:`.tables`         tables (:mod:`.tables.frames`) and sentences (:mod:`.tables.text`) for the pages
- :mod:`.plots`          offline interactive charts: the renderer, the chart builders, each page's figures
- :mod:`.schematic`      the method's schematic figure
"""

from .deferred import defer_iri_grammar

defer_iri_grammar()  # before anything imports altair (and jsonschema): 1 s of every kernel's start

