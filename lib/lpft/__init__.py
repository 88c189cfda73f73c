"""lpft: the library behind the executable companion to the LP-FT paper (Kumar et al., ICLR 2022).

One module per idea: :mod:`lpft.theory` (two-layer linear networks, Section 3), :mod:`lpft.beyond` (the same
experiment outside the theorem's assumptions), :mod:`lpft.profiles` (chapter parameters), :mod:`lpft.plotting`
(the book's one figure style), :mod:`lpft.report` (tables and numbers as the book prints them),
:mod:`lpft.execute` (runs chapters with papermill).
"""
from lpft.profiles import start_chapter

__all__ = ["start_chapter"]
__version__ = "0.1.0"
