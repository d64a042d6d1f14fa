"""Interactive charts that work offline, in the built book and in notebooks, by one name.

- :mod:`.render`    the offline renderer and the vega bundle (why: the module's docstring)
- :mod:`.charts`    the chart builders every figure is made of
- :mod:`.style`     :class:`.style.ChartStyle`, how a chart looks (size, titles, colours), apart from its data
- :mod:`.matrices`  response matrices with their stripes, eps sweeps beside their JVP
- :mod:`.training`  the toy model's phase change
- :mod:`.figures`   the figures of the emergence, cross-check, null and section-map pages
- :mod:`.calibration` the null page's profile of the repeat's effect by source offset
- :mod:`.convert`   vl-convert's SVG and PNG, safe under an address-space limit (imported by name)
"""

from . import calibration, charts, figures, matrices, render, style, training
from .calibration import *  # noqa: F401,F403
from .charts import *  # noqa: F401,F403
from .figures import *  # noqa: F401,F403
from .matrices import *  # noqa: F401,F403
from .render import *  # noqa: F401,F403
from .style import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403

__all__ = [*render.__all__, *style.__all__, *charts.__all__, *matrices.__all__, *training.__all__, *figures.__all__,
           *calibration.__all__]
