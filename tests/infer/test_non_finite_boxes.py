"""A head whose box regression gives NaN (a diverged run's weights) is the photo's error naming it, never NaN written
into the predictions nor invalid JSON from the server."""

import torch
from PIL import Image

from bbuvl.infer.predictor import Predictor


def test_a_head_giving_nan_boxes_is_the_photos_error_not_nan_boxes(trained_checkpoint):
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    with torch.no_grad():  # the load refuses a file of NaN weights; a model diverged in memory is not read from one
        predictor.model.detection_head.box_head.layers[-1].bias.fill_(float("nan"))
    prepared = [predictor.prepare(Image.new("RGB", (224, 168), (200, 30, 30)))]
    (result,) = predictor.predict_each(prepared, "head", predictor.options("head", objectness_threshold=0.0))
    assert isinstance(result, ValueError) and "non-finite boxes" in str(result), result
