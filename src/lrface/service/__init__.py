"""The watch-list service: a FastAPI app over a gallery store and a ``FacePipeline``
(``app.create_app``), its routers (``routes``), what they share (``context``), the key and body
guard (``guard``), keys (``security``), the bounded work lanes (``work``), the served gallery
(``watchlist``) and the ``lrface serve`` command."""
