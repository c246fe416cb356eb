"""A class folder with no photos is refused by its own name, however deep: a nested class's empty folder was named by
its topmost folder, which holds other folders and no photo of its own to add (fewshot/support.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from bbuvl.fewshot.support import read_support


@pytest.mark.parametrize("empty", ["螺丝连接点/新接头/连接正确", "cable/shot5/bad", "odf"])
def test_an_empty_class_folder_is_named_by_itself(tmp_path, empty):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "photo.png")
    (tmp_path / "cable").mkdir()
    (tmp_path / "photo.png").rename(tmp_path / "cable" / "a.png")
    (tmp_path / empty).mkdir(parents=True)
    (tmp_path / empty / ".ipynb_checkpoints").mkdir()  # a hidden folder inside it is no class of its own
    with pytest.raises(ValueError) as e:
        read_support(tmp_path)
    # before: 'support/螺丝连接点: class folder without images', a folder with no class of its own to fill
    assert str(e.value).startswith(f"{tmp_path / empty}: class folder without images"), e.value
