"""A support folder edited between two `fewshot classify` runs sharing a cache: a photo replaced under its own name, a
class folder renamed, a photo added (a copy of a query's). The cache knows photos by content, so only the replaced photo
is embedded again, and the run says so apart from the queries' (the two summed hid it)."""

from __future__ import annotations

import csv

from PIL import Image

from tests.fewshot.test_hostile_input import invoke, photos


def test_only_a_photo_replaced_under_its_name_is_embedded_again_and_said_as_the_supports(tmp_path):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    query = tmp_path / "query"
    for name, colour in (("a", (10, 200, 30)), ("b", (90, 10, 250))):
        (query / name).mkdir(parents=True)
        Image.new("RGB", (12, 10), colour).save(query / name / "q.png")
    common = ("--support", support, "--query", query, "--backbone", "pixels:8", "--cache", tmp_path / "cache",
              "--threshold", "-1")
    code, said = invoke("classify", *common, "--out", tmp_path / "r1.csv")
    assert code == 0 and "support 4 computed, 0 from the cache; queries 2 computed, 0 from the cache" in said, said

    Image.new("RGB", (12, 10), (250, 250, 10)).save(support / "a" / "0.png")  # another photo under its name
    (support / "b").rename(support / "c")  # renamed: the same photos, by content, under another class
    (support / "c" / "new.png").write_bytes((query / "b" / "q.png").read_bytes())  # added: a query's own photo
    code, said = invoke("classify", *common, "--out", tmp_path / "r2.csv")
    assert code == 0 and "support 1 computed, 4 from the cache; queries 0 computed, 2 from the cache" in said, said
    rows = {r["query"]: r for r in csv.DictReader((tmp_path / "r2.csv").open(encoding="utf-8"))}
    assert (rows[str(query / "b" / "q.png")]["best_class"], rows[str(query / "b" / "q.png")]["truth"]) == ("c", "b")
