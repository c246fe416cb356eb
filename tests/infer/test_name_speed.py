"""Name mode reads a photo's prompt, photo included, once for all its boxes: its rows are decoded `batch_rows` at a
time, and each chunk read the same prompt again through the vision tower and the LLM (infer/continuations.py,
`PromptRead`; bench/predict_speed.py). Qwen3.5's Gated DeltaNet layers cannot continue a shared prompt past a masked
gap, so that family decodes each chunk's rows whole and reads the photo once a chunk (docs/localisation.md)."""

import pytest

from bbuvl.infer.continuations import can_continue_prompt
from bbuvl.model.vlm import core_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_name_mode_reads_a_photos_prompt_once_whatever_the_chunks_of_its_boxes(predictor, photos):
    visual = core_model(predictor.model.vlm).model.visual
    calls = []
    handle = visual.register_forward_hook(lambda *a: calls.append(1))
    queries = 3
    options = dict(objectness_threshold=0.0, nms_iou=None, queries=queries, tiles="off", zoom_containers=(),
                   part_nms=None, max_new_tokens=24)
    try:
        (one_a_chunk,) = predictor.predict_lines(photos[:1], "name", batch_rows=1, **options)
        chunked = len(calls)
        (all_at_once,) = predictor.predict_lines(photos[:1], "name", batch_rows=64, **options)
        at_once = len(calls) - chunked
    finally:
        handle.remove()
    assert len(one_a_chunk["objects"]) >= 2  # several chunks of one box each
    # The head's pass and the naming's, not one a chunk; full rows (Qwen3.5) read the photo once in each of the
    # `queries` chunks of one box, and once in the one chunk of all.
    assert chunked == (2 if can_continue_prompt(predictor.model.vlm) else 1 + queries)
    assert at_once == 2
    assert one_a_chunk == all_at_once  # the rows named as one chunk of all name them alike
