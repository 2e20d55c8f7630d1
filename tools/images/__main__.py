"""Entry point: python -m tools.images ..."""

from tools.images.cli import app

app()
