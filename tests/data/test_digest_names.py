"""A digest a record vouches for is named as its caller asks, not as the record named it (data/digests.py)."""

from __future__ import annotations

from bbuvl.data.digests import file_digest


def test_a_recorded_digest_trusted_by_its_stat_carries_the_name_it_is_asked_for(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("{}", encoding="utf-8")
    own = file_digest(f, "config.json")  # as the folder's own record names it
    seen = file_digest(f, "base/config.json", {"base/config.json": own})  # as a LoRA checkpoint's identity names it
    assert seen.name == "base/config.json" and seen.sha256 == own.sha256 and seen.inode == own.inode
    assert file_digest(f, "config.json", {"config.json": own}) is own
