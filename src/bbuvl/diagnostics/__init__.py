"""Diagnostics: `bbuvl doctor` checks (data, model, memory, features, attention, landscape) and the training-health
monitors that run inside every training run (docs/design.md)."""
