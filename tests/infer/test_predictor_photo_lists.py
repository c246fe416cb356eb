"""What `Predictor` takes from a Python caller: a list of photos. An empty one raised 'max() arg is an empty sequence'
(from the collator) where `predict_lines([])` gave [], and one path given alone was read letter by letter
('s: image file not found')."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("mode", ["head", "generate"])
def test_no_photos_are_no_results_in_every_call(predictor, mode):
    assert predictor.predict([], mode) == []
    assert predictor.predict_detection([], mode) == []
    assert predictor.predict_each([], mode) == []
    assert predictor.predict_lines([], mode) == []


def test_no_photos_in_a_mode_the_checkpoint_cannot_run_or_with_a_misspelt_option_is_still_refused(predictor):
    with pytest.raises(ValueError, match="mode must be one of"):
        predictor.predict([], "nope")
    with pytest.raises(ValueError, match="tilez"):
        predictor.predict([], "head", tilez="off")


def test_one_photo_given_alone_is_refused_saying_to_pass_a_list(predictor, photos):
    one = photos[0]
    for given, shown in ((one, repr(one)), (Path(one), repr(one)), (Image.open(one), "image")):
        for call in ("predict", "predict_detection", "predict_lines"):
            with pytest.raises(TypeError) as raised:
                getattr(predictor, call)(given, "head")
            assert str(raised.value) == (f"Predictor.{call} takes a list of photos (paths or PIL images), got one "
                                         f"{type(given).__name__}: pass [{shown}]")
    # the list of that one photo is predicted, in each spelling
    results = [predictor.predict([given], "head")[0] for given in (one, Path(one), Image.open(one))]
    assert all((r.width, r.height, r.objects) == (results[0].width, results[0].height, results[0].objects)
               for r in results)
