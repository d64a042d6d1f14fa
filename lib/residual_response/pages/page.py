"""What every book page imports: one line, ``from residual_response.page import *`` (that module
re-exports this one).

Why a module for it: each page used to open with 15-30 lines of the same imports and the same
set-up calls, which a reader had to skip and a maintainer had to keep in step across pages.
Importing this module prepares the page (offline charts on, progress bars and library chatter
off in every cell: :func:`.setup.page_setup`) and brings the names every page uses. A page
imports its own science module (``crosscheck``, ``models.toy``, ``bench`` ...) and its own part of
this package (``pages.studies``, ``pages.regime_tables`` ...) beside it by name.
"""

from __future__ import annotations

import time

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from ..canonical import CANONICAL
from ..checks import allow_eps, check_int, check_int_list, validate_eps, validate_layer
from ..engine import response
from ..headline import headline
from ..induction import induction_scores, section_map
from ..models import REGISTRY, load_model
from ..sequences import induction_layout, make_sequence, spread, validate_length
from . import plots, tables
from .setup import page_setup
from .tables import NA, fmt_eps, setting_text, styled, timed

__all__ = [
    "time", "alt", "np", "pd", "Markdown", "display", "glue",
    "plots", "tables", "CANONICAL", "validate_eps", "validate_layer", "response", "headline",
    "induction_scores", "section_map", "REGISTRY", "load_model", "induction_layout", "make_sequence",
    "validate_length", "spread", "NA", "fmt_eps", "setting_text", "styled",
    "check_int", "check_int_list", "timed", "glue_all", "allow_eps",
]

page_setup()


def glue_all(values: dict | None = None, **named) -> None:
    """Glue every value of ``values`` and ``named`` under its key, not displayed.

    Why: a page quotes a dozen numbers in its prose; one call per number was most of its code.
    A numpy scalar is glued as the Python number it holds: its text form under numpy 2
    (``np.float64(0.91)``) cannot take a format spec such as ``{glue:text}`x:.2f```.
    """
    for key, value in {**(values or {}), **named}.items():
        glue(key, value.item() if isinstance(value, np.generic) else value, display=False)

