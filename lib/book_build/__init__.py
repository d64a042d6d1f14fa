"""Build the book: execute its notebooks with papermill, then run Jupyter Book on the result.

    python scripts/build_book.py --profile {ci,publish} --out _build [--only PAGE ...] \
        [--param KEY=YAML ...] [--skip-html] [--jobs N] [--recompute]

``--only`` builds the named pages (prose pages are always staged); ``--param KEY=YAML`` overrides
one parameter of every page built that declares it, its value parsed as YAML (``--param T=20``,
``--param "models=[random-llama, toy-gpt2]"``). A key that no page built declares in its
``parameters`` cell stops the build before anything runs (exit 2, one ``error:`` line naming
the pages' parameters); so does a value a page itself rejects (its parameter checks raise a
``ValueError``, shown as that one sentence).

Why a staging folder: an executed ``.ipynb`` beside its MyST ``.md`` source makes Sphinx
warn "multiple files found for the document", which fails a ``-W`` build. So the build
copies ``_config.yml``, ``_toc.yml`` and the prose/static files of ``book/`` into
``<out>/stage``, converts each notebook of ``book/pages.yml`` with jupytext, executes it with
papermill (with the profile's parameters, working folder = the stage) into
``<out>/stage/<name>.ipynb``, writes the offline vega bundle into ``<out>/stage/_static/``,
and runs ``jupyter-book build <out>/stage -W -n --keep-going`` with notebook execution off.

Each executed page also gets, right after papermill's (hidden) injected-parameters cell, a
markdown cell with a collapsed box listing every parameter the page ran with, and a link to its
exercise notebook ``_static/student/<page>-student.ipynb`` (written by the build: the source
notebook with these parameters, no outputs, the exercise solutions removed, its MyST as plain
Markdown with the page's glued values, its imports by name; see ``student_notebook``). A page with
build-it-yourself exercises must pass their checks with its own solutions (``verify_checks``). Code cells with a ``table: {caption, name}`` metadata entry get their
HTML table output turned into a numbered, captioned MyST ``{table}`` (see ``caption_tables``).
The prose page ``instructor.md`` gets the table of pages, exercises and measured run times of
this build in place of its ``<!-- build: course-table -->`` line.

A page whose code, parameters, library source, package versions and model weights are those of
an entry of the page cache (``$RESIDUAL_RESPONSE_CACHE/pages``, :mod:`.cache`) is not executed:
its stored outputs are merged into the current notebook. ``--recompute`` executes every page.
With ``--only``, the other pages of the profile are taken from the cache where it has them.

Result: ``<out>/stage/_build/html/index.html``; per-notebook times in ``<out>/timings.json``.
Exits 2 with one ``error:`` line on bad input (an unknown page or parameter, a malformed
``--param``, a parameter value a page rejects); 1, with one message naming the notebook and the
failing cell's error, if any notebook fails; 1 as well on any Sphinx warning, or if a built
page refers to a CDN.

Modules, in the order a build uses them:

- :mod:`.config`   paths, ``book/pages.yml`` as pages, the build's errors
- :mod:`.params`   declared parameters, ``--param`` overrides, the parameter box
- :mod:`.stage`    the staging folder, the pruned toc, the instructor page's course table
- :mod:`.execute`  the kernel, papermill, and what the build adds to each executed page
- :mod:`.cache`    the page cache: a page is executed again only when what it depends on changed
- :mod:`.parallel` pages side by side (``--jobs``), longest first, each after the pages of its ``after:``
- :mod:`.exercises` the build-it-yourself exercises' cell tags, and the check that the page's solutions pass
- :mod:`.markdown` MyST roles and directives as plain Markdown, for the student notebooks
- :mod:`.student`  the exercise notebook without solutions
- :mod:`.html`     numbered tables, Jupyter Book, the CDN check
- :mod:`.outdir`   ``--out``: checked first, left as found by a refused or interrupted build
- :mod:`.cli`      the command line and ``timings.json``
"""

import os

# Prefer this environment's kernelspecs over ~/.local ones: the kernel that runs must be
# the one whose python has residual_response installed.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")

from .config import *  # noqa: E402,F401,F403
from .execute import *  # noqa: E402,F401,F403
from .html import *  # noqa: E402,F401,F403
from .cli import *  # noqa: E402,F401,F403
from .params import *  # noqa: E402,F401,F403
from .stage import *  # noqa: E402,F401,F403
from .student import *  # noqa: E402,F401,F403
from .exercises import *  # noqa: E402,F401,F403
from .markdown import *  # noqa: E402,F401,F403
