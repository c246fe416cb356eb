"""A support or query photo that is a link to a photo that moved (a share not mounted, a library reorganised) was left
out without a word: a class fitted from fewer photos, a query missing from the results. It is named, as predict names
such a link's line: a support photo is refused naming it, a query is skipped naming it."""

from __future__ import annotations

import csv

from tests.fewshot.test_hostile_input import invoke, photos


def test_a_link_to_a_moved_photo_is_named_in_the_support_and_among_the_queries(tmp_path):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    query = photos(tmp_path / "query", {"a": 1})
    (query / "a" / "moved.png").symlink_to(tmp_path / "nas" / "moved.png")
    common = ("--support", support, "--backbone", "pixels:8", "--no-cache")
    code, said = invoke("classify", *common, "--query", query, "--out", tmp_path / "r.csv")
    assert code == 0 and f"{query / 'a' / 'moved.png'}: image file not found" in said, said
    assert len(list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))) == 1

    (support / "b" / "moved.png").symlink_to(tmp_path / "nas" / "moved.png")
    code, said = invoke("classify", *common, "--query", query, "--out", tmp_path / "r2.csv")
    assert code == 2 and f"{support / 'b' / 'moved.png'}: cannot read support image" in said, said
