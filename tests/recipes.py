"""What the learnability guards change in the stage-A recipe (configs/demo_shapes.yaml) to train as their bars were
measured."""

# The stage-A recipe trains with the grounding terms, which teach generate mode (docs/grpo.md). The head, name-mode
# and GRPO guards' bars and spreads were measured without them, and the terms cost each guard about a sixth of its
# steps' time; tests/test_generate_learnability.py guards the terms themselves.
WITHOUT_GROUNDING = ("loss.grounding_attention=0", "loss.coordinate_regression=0")
