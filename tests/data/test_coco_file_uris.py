"""A COCO file_name written as a `file://` URI of a photo on this machine (as some annotation tools write it) is read as
the path it names: it was joined to IMAGES_DIR and refused as `IMAGES_DIR/file:/...`, "download it". A URL of anything
else is an error of its image entry, quoting the file_name as written."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.request import pathname2url

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.synthetic.dataset import synthesize


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_a_file_uri_of_a_photo_here_is_imported_and_other_urls_are_refused_as_written(tmp_path):
    synthesize(tmp_path / "ds", 3, 0, seed=3, size=(160, 120), num_teachers=0)
    code, out = invoke("data", "export-coco", tmp_path / "ds" / "train.jsonl", tmp_path / "ds" / "c.json")
    assert code == 0, out
    coco = json.loads((tmp_path / "ds" / "c.json").read_text(encoding="utf-8"))
    first, second, third = coco["images"]
    spaced = tmp_path / "ds" / "images" / "a photo 红.jpg"  # escaped in the URI: %20, and the UTF-8 bytes of 红
    (tmp_path / "ds" / first["file_name"]).rename(spaced)
    first["file_name"] = "file://" + pathname2url(str(spaced))
    second["file_name"] = "https://example.com/site/" + Path(second["file_name"]).name
    third["file_name"] = "file://nas/share/" + Path(third["file_name"]).name
    del third["width"], third["height"]  # read from the photo, which the URL does not name here
    (tmp_path / "ds" / "c.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, out = invoke("data", "import-coco", tmp_path / "ds" / "c.json", tmp_path / "ds", tmp_path / "out",
                       "--val-ratio", "0", "--teachers", "0")
    assert code == 0, out
    [line] = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["images"] == ["images/a photo 红.jpg"], line
    assert (f"images[1]: image entry without a usable id/file_name/width/height (file_name "
            f"'{second['file_name']}' is a URL (https://): photos are read from local files only; download it and "
            "write its path)") in out, out
    assert (f"images[2]: no width and height in the COCO file, and none from its photo: file_name '{third['file_name']}' "
            "is a URL (file://) of another machine") in out, out
