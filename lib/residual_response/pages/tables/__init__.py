"""Tables and sentences for the pages: :mod:`.frames` (tidy tables for the charts and the tables
shown) and :mod:`.text` (numbers and sentences as the book writes them), both by one name here.
"""

from . import frames, text
from .frames import *  # noqa: F401,F403
from .text import *  # noqa: F401,F403

__all__ = [*frames.__all__, *text.__all__]
