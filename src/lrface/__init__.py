"""lrface: low-resolution face recognition by transfer from a high-resolution teacher.

The Python API (``lrface.api``, imported on first use so ``import lrface`` stays cheap)::

    import lrface
    rec = lrface.Recognizer()                          # detector + teacher + shipped student
    rec.verify("a.jpg", "b.png")                       # score, threshold, decision, faces
    gallery = lrface.open_gallery("watchlist.db")      # an SQLite gallery, created if new
    gallery.enroll("Jane Doe", ["jane1.jpg", "jane2.jpg"], recognizer=rec)
    gallery.search("cctv_still.png", recognizer=rec)   # identity or unknown, per face
    for event in lrface.watch("camera.mp4", gallery):  # track events as they end
        print(event.decision.describe())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lrface.constants import __version__ as __version__

if TYPE_CHECKING:
    from lrface.api import Recognizer, Watchlist, open_gallery, watch

__all__ = ["Recognizer", "Watchlist", "__version__", "open_gallery", "watch"]
_API = {"Recognizer", "Watchlist", "open_gallery", "watch"}


def __getattr__(name: str):
    """The API's names, imported from ``lrface.api`` (torch and all) only when first used."""
    if name in _API:
        from lrface import api

        return getattr(api, name)
    raise AttributeError(f"module 'lrface' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
