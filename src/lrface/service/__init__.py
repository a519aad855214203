"""The watch-list service: a FastAPI app over a gallery store and a ``FacePipeline``
(``app.create_app``), its security checks (``security``) and the ``lrface serve`` command."""
