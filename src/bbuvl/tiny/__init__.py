"""Tiny offline stand-ins for tests and the demo: each Qwen VL family with a trained BPE tokenizer, and few-shot backbones.

Scaffolding beside the production code: only the CLI (`bbuvl model tiny`, `bbuvl fewshot tiny-backbone`) and tests import it.
"""
