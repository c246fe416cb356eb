"""Diagnostics: `bbuvl doctor` checks (data, model, memory, features, attention, landscape), run before or after
training (docs/design.md). The monitors that run inside every training run are train/monitors.py."""
