"""Test and demo scenes: simple synthetic datasets that check the pipeline, beside the production code."""
