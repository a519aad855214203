"""``python -m lrface.cli`` (what ``torchrun ... -m lrface.cli train`` runs)."""

from lrface.cli import app

app()
