"""What every book page imports, under the name the pages use: ``from residual_response.page import *``.

The page layer lives in :mod:`residual_response.pages` (:mod:`.pages.page` is this set-up); this
module only keeps the one line every notebook starts with working.
"""

from .pages.page import *  # noqa: F401,F403
from .pages.page import __all__  # noqa: F401
