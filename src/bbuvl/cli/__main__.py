"""`python -m bbuvl.cli ...` (what accelerate launch / torchrun run)."""

from bbuvl.cli import app

app()
