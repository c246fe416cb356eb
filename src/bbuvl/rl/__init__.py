"""Reinforcement fine-tuning (GRPO): rollouts decoded as predict decodes, detection rewards, the objective (docs/grpo.md)."""
