"""``python -m residual_response.cli``: the same as ``residual-response``."""

import sys

from . import main

sys.exit(main())
