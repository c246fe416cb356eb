"""A PIL image given to `Predictor` is turned by its EXIF orientation, as its file is: a phone's portrait (stored
sideways, EXIF 6) opened with `Image.open` was predicted on its sideways pixels, 168x224 with a box at
[120, 102, 163, 159], where its path gave 224x168 and [65, 118, 125, 163]. The upright pixels a server decodes from the
same file's upload reach the model as the same photo (serve/images.py and data/images.py share `oriented`)."""

from __future__ import annotations

import pytest
from PIL import Image

from bbuvl.data.images import EXIF_ORIENTATION, load_image
from bbuvl.serve.engine import Engine
from bbuvl.serve.images import decode_upload

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sideways(photos, tmp_path_factory) -> str:
    """A validation photo stored as a phone stores a portrait: turned on its side, with EXIF saying to turn it back."""
    upright = Image.open(photos[0]).convert("RGB")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # turn 90 degrees clockwise to view
    path = tmp_path_factory.mktemp("exif") / "portrait.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes(), quality=95)
    return str(path)


def _seen(result) -> tuple:
    return result.width, result.height, result.objects


@pytest.mark.parametrize("tiles", ["off", "2x1"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_given_in_memory_is_answered_as_its_file_upright(predictor, sideways, tiles):
    by_path, = predictor.predict([sideways], "head", tiles=tiles)
    assert (by_path.width, by_path.height) == (224, 168) and by_path.objects
    with Image.open(sideways) as opened:
        assert opened.size == (168, 224)
        given = [opened, opened.convert("RGB"), load_image(sideways).image]  # the turned one is not turned again
        for image in given:  # each alone, as the path was: a batch's rows differ in the last digits
            assert _seen(predictor.predict([image], "head", tiles=tiles)[0]) == _seen(by_path)


def test_a_servers_upload_of_the_file_reaches_the_model_as_its_path_does(predictor, sideways):
    """The server's upright pixels say no turn is left: `prepare` turning an image by its EXIF does not turn them
    again."""
    with open(sideways, "rb") as f:
        upload = decode_upload(f.read(), max_pixels=10**7)
    assert upload.size == upload.image.size == (224, 168)
    photo = Engine(predictor, "head", "tiny").prepare(upload.image, upload.size)
    assert photo.prepared.image.tobytes() == predictor.prepare(sideways).image.tobytes()
    served, = predictor.predict_each([photo.prepared], "head")
    assert _seen(served) == _seen(predictor.predict([sideways], "head")[0])


def test_a_file_of_several_pictures_opened_in_memory_is_refused_as_its_path_is(predictor, tmp_path):
    # Answered for its first frame before, where its path was refused (data/images.py frames_problem)
    from tests.data.test_images_frames import pictures

    path = tmp_path / "animated.png"
    path.write_bytes(pictures("PNG", 3))
    with pytest.raises(ValueError, match=r"animated.png: an animated PNG of 3 frames; "):
        predictor.prepare(str(path))
    with Image.open(path) as opened, pytest.raises(ValueError, match=r"^an animated PNG of 3 frames; "):
        predictor.prepare(opened)
    with Image.open(path) as opened:
        opened.seek(2)  # a frame the caller chose
        assert predictor.prepare(opened).size == (64, 48)
        assert predictor.prepare(opened.convert("RGB")).size == (64, 48)
