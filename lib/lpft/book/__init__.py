"""What exists because this is a book: chapter profiles (:mod:`lpft.book.profiles`), where results, caches and
archives live (:mod:`lpft.book.paths`), the ``lpft-run`` papermill runner (:mod:`lpft.book.run`), the one figure style
(:mod:`lpft.book.plotting`), glued numbers (:mod:`lpft.book.glue`), the one helper of the paper-scale chapters
(:mod:`lpft.book.paperscale`), the paper's claims and the chapters' verdicts on them that the front page
shows (:mod:`lpft.book.claims`) and the Sphinx extensions. Every chapter starts
with :func:`start_chapter`. Its extra dependencies: ``pip install "lpft[book]"``.
"""
from lpft.book.profiles import start_chapter

__all__ = ["start_chapter"]
