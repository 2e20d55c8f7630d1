"""QFrame research platform package (import path ``qframe.research``).

The data layer, backtesting, analytics and tracking modules arrive with their issues; importing
this package has no side effects.
"""

__version__ = "0.1.0"
