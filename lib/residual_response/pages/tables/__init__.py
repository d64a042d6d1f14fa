"""Tables and sentences for the pages: :mod:`.frames` (tidy tables for the charts and the tables
shown) and :mod:`.text` (numbers and sentences as the book writes them) and :mod:`.ablation_text` (the cross-checks page's
ablation sentences) and :mod:`.calibration` (the null page's
conditions under each baseline) and :mod:`.contrasts` (the response-matrix page's stripe ratios
with intervals) and :mod:`.heads_table` (the cross-checks page's top heads with intervals) and :mod:`.sections_text` (the paper page's row on model sections), all by one name here.
"""

from . import ablation_text, calibration, contrasts, frames, heads_table, sections_text, text
from .ablation_text import *  # noqa: F401,F403
from .calibration import *  # noqa: F401,F403
from .contrasts import *  # noqa: F401,F403
from .frames import *  # noqa: F401,F403
from .heads_table import *  # noqa: F401,F403
from .sections_text import *  # noqa: F401,F403
from .text import *  # noqa: F401,F403

__all__ = [*frames.__all__, *text.__all__, *ablation_text.__all__, *calibration.__all__, *contrasts.__all__, *heads_table.__all__,
           *sections_text.__all__]
