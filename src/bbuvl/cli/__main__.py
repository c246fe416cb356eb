"""`python -m bbuvl.cli ...` (what accelerate launch / torchrun run): the CLI without `bbuvl`'s Ctrl-C, SIGTERM and
SIGHUP handling (bbuvl/entry.py), which ended torchrun's ranks seconds later than the signal's default action does
(docs/resume.md, "Stopped by Ctrl-C, SIGTERM or SIGHUP")."""

from bbuvl.cli import app, bars_off_in_logs, collect_once_at_exit

bars_off_in_logs()
collect_once_at_exit()
app()
