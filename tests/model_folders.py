"""Model folders taken apart as a damaged copy would be, for the tests that check each is refused naming what is gone."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_PROCESSOR_GONE = "preprocessor_config.json (or an image_processor in processor_config.json)"


def remove_file(folder: Path, name: str) -> str:
    """Remove `name` from `folder`; returns what a refusal says is missing. The image processor's settings are in
    preprocessor_config.json and nested in processor_config.json too: removing the first removes both."""
    (folder / name).unlink()
    if name != "preprocessor_config.json":
        return name
    nested = folder / "processor_config.json"
    if nested.is_file():
        saved = json.loads(nested.read_text(encoding="utf-8"))
        saved.pop("image_processor", None)
        nested.write_text(json.dumps(saved), encoding="utf-8")
    return IMAGE_PROCESSOR_GONE


# Keys the oldest bbu-vl of this history (2026-11-21) wrote no line for in a checkpoint's bbuvl.yaml, among them the
# ones that build today's head encoder and vision positions.
OLDER_KEYS = (("model", "vision_positions"), ("detection", "encoder_layers"), ("detection", "local_layers"),
              ("detection", "roi_points"))


def as_an_older_bbuvl_wrote_it(folder: Path) -> None:
    """Rewrite a checkpoint (or checkpoint-N) as that bbu-vl wrote one, whole: its bbuvl.yaml without OLDER_KEYS, a
    head without the encoder it had not, no vision positions file and no content digest (both came later)."""
    import yaml
    from safetensors.torch import load_file, save_file

    config = yaml.safe_load((folder / "bbuvl.yaml").read_text(encoding="utf-8"))
    for section, key in OLDER_KEYS:
        del config[section][key]
    (folder / "bbuvl.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    head = load_file(folder / "detection_head.safetensors")
    save_file({k: v for k, v in head.items() if not k.startswith("encoder.")}, folder / "detection_head.safetensors")
    for name in ("vision_positions.safetensors", "content_digest.json"):
        (folder / name).unlink(missing_ok=True)
