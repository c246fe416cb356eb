"""/readyz and /metrics of a --fewshot server say which support set it serves and whether its folder is stale."""

from __future__ import annotations

from tests.serve.test_fewshot_support_changes import crops, put, served, wait_for  # noqa: F401 (fixtures)


def test_readyz_and_metrics_name_the_support_version_its_classes_and_a_stale_folder(served, crops):  # noqa: F811
    client, rescorer, folder, spare = served
    ready = client.request("GET", "/readyz").json()
    assert ready["ready"] and ready["fewshot"]["version"] == 1 and ready["fewshot"]["stale"] is None
    assert sorted(ready["fewshot"]["classes"]) == sorted(crops[1][:2])
    put(crops[0] / spare, folder, spare)
    wait_for(rescorer, lambda s: s["version"] == 2, "the added class was never served")
    (folder.parent / "half.png").write_bytes(b"\x89PNG\r\n\x1a\n not whole")
    (folder.parent / "half.png").rename(folder / spare / "half.png")
    wait_for(rescorer, lambda s: s["stale"] is not None, "the corrupt photo was never noticed")
    ready = client.request("GET", "/readyz")
    # stale, and still ready: the last good set answers
    assert ready.status == 200 and str(folder / spare / "half.png") in ready.json()["fewshot"]["stale"]
    text = client.request("GET", "/metrics").body.decode()
    assert "bbuvl_fewshot_support_version 2.0" in text and "bbuvl_fewshot_support_stale 1.0" in text
    assert f'bbuvl_fewshot_support_photos{{class="{spare}"}}' in text
