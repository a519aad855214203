"""1:N search: galleries of enrolled identities (``store``: where they live, ``open_gallery``
to open or create one; ``gallery``: the faiss index; ``decision``: the open-set answer)."""

from lrface.search.store import open_gallery

__all__ = ["open_gallery"]
