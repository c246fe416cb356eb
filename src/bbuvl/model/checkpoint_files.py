"""Every file of a checkpoint read with an error that names the file and what is wrong in it.

A checkpoint is read by HF (config.json, tokenizer and processor files, the chat template, the weights) and by
us (bbuvl.yaml, prompt.json, the contract, the scale, the head, vision positions and coordinate read-out). A
hand-edited or damaged file used to end in a traceback far from the cause (a `TypeError` inside HF, a shape
mismatch inside `load_state_dict`). So each is checked when the folder is read, before any weights load: JSON
files parse to an object, the chat template compiles, prompt.json has exactly its three keys, and each module
file holds exactly the tensors, shapes and finite values the run config builds.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

from bbuvl.data.jsonfile import json_kind

PROMPT_KEYS = {"system": str, "labels": list, "lang": str}
# Keys transformers writes in every file of each kind it saves. A JSON object holding none of them was emptied (a copy
# that wrote `{}`) or another file put in its place, and transformers read it as its defaults without a word: an
# emptied tokenizer_config.json lost the special tokens, and the error was "model config and tokenizer disagree",
# naming neither file; an emptied preprocessor_config.json or generation_config.json loaded.
WRITTEN_KEYS = {"tokenizer_config.json": ("tokenizer_class", "eos_token", "added_tokens_decoder"),
                "preprocessor_config.json": ("image_processor_type", "processor_class", "patch_size"),
                "processor_config.json": ("processor_class", "image_processor"),
                # an older transformers' file of the template: emptied, it was a bare KeyError 'chat_template'
                "chat_template.json": ("chat_template",)}
LANGS = ("zh", "en")


# The JSON files of a model folder transformers (and peft) read themselves, as UTF-8 with Python's json, which
# refuses a byte order mark: tokenizer_config.json with one was a bare JSONDecodeError naming no file, and
# generation_config.json with one was skipped for the defaults without a word. bbu-vl's own files are read past one,
# and in UTF-16 (data/jsonfile.py), so json_problem passed them.
HF_JSON_FILES = frozenset({"config.json", "tokenizer_config.json", "tokenizer.json", "preprocessor_config.json",
                           "processor_config.json", "video_preprocessor_config.json", "generation_config.json",
                           "chat_template.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                           "adapter_config.json", "model.safetensors.index.json"})
UTF8_BOM = b"\xef\xbb\xbf"


def json_problem(folder: Path) -> str | None:
    """Why one of a model folder's JSON files cannot be read as HF and bbu-vl read it (None when all can)."""
    from bbuvl.data.jsonfile import read_json

    for path in sorted(folder.glob("*.json")):
        try:
            data = read_json(path)
        except (ValueError, OSError) as e:
            return str(e).replace(f"{path}: ", f"{path.name}: ", 1)
        if not isinstance(data, dict):
            return f"{path.name}: holds {json_kind(data)}, expected a JSON object ({{...}})"
        if (line := long_integer_line(path)) is not None:
            return (f"{path.name}: line {line}: a number of more than {sys.get_int_max_str_digits():,} digits, which "
                    "Python's JSON reader, and through it transformers, refuses")
        if (problem := emptied_problem(path.name, data)) is not None:
            return problem
        if path.name in HF_JSON_FILES and (saved := _not_plain_utf8(path)) is not None:
            return (f"{path.name}: saved {saved} (as some Windows editors save), which transformers' JSON reader "
                    "refuses or skips: save it as UTF-8 without a byte order mark")
    return None


def _not_plain_utf8(path: Path) -> str | None:
    """How the JSON file at `path` is saved when not as UTF-8 without a byte order mark, told from its first bytes
    (JSON starts with ASCII: a zero byte among them is UTF-16 or UTF-32); None when it is."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(UTF8_BOM):
        return "with a UTF-8 byte order mark"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in head:
        return "as UTF-16 or UTF-32"
    return None


def emptied_problem(name: str, data: dict) -> str | None:
    """Why the settings file `name` holding `data` is no file of its kind (`WRITTEN_KEYS`; a generation_config.json
    holding no generation setting), or None."""
    if name == "generation_config.json":
        from transformers import GenerationConfig

        keys = tuple(sorted(GenerationConfig().to_dict()))
        if not set(data) & set(keys):
            return (f"{name}: holds no generation setting ({', '.join(sorted(data)) or 'nothing'}): emptied, or "
                    "another file copied over it")
        return None
    keys = WRITTEN_KEYS.get(name)
    if keys is None or set(data) & set(keys):
        return None
    return (f"{name}: holds none of {', '.join(keys)}, which transformers writes in every one "
            f"({', '.join(sorted(data)) or 'it holds nothing'}): emptied, or another file copied over it")


def long_integer_line(path: Path) -> int | None:
    """The line of an integer in the JSON file `path` longer than Python's json reads, or None. Our reader takes it as
    inf (data/jsonfile.py), transformers' raised "Exceeds the limit (4300 digits)", naming no file, once weights
    had loaded."""
    limit = sys.get_int_max_str_digits()
    raw = path.read_bytes()
    found = re.search(rb"[0-9]{%d}" % (limit + 1), raw) if limit > 0 else None
    if found is None:
        return None
    try:  # digits inside a string are no number
        json.loads(raw)
    except ValueError:
        return raw.count(b"\n", 0, found.start()) + 1
    return None


TEMPLATE_FILE = "chat_template.jinja"  # where save_pretrained writes the processor's chat template
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"  # the image processor's settings, as Qwen's own checkpoints ship them
PROCESSOR_CONFIG_FILE = "processor_config.json"


def saved_image_processor(folder: Path) -> dict[str, Any] | None:
    """A model folder's image processor settings: preprocessor_config.json, else the `image_processor` object in
    processor_config.json; None when neither holds them. ValueError naming a file that is not JSON, or whose settings
    are no JSON object.

    transformers 5 nests the image processor in processor_config.json when it saves a processor with a video
    processor: a stock Qwen processor, which it loads wherever torchvision imports (every GPU machine measured), so
    a checkpoint trained there has no preprocessor_config.json (docs/families.md, "Processor files").
    """
    from bbuvl.data.jsonfile import read_json

    legacy = folder / IMAGE_PROCESSOR_FILE
    if legacy.is_file():
        data = read_json(legacy, "image processor config")
        if not isinstance(data, dict):
            raise ValueError(f"{legacy}: holds {json_kind(data)}, expected a JSON object ({{...}})")
        return data
    nested = folder / PROCESSOR_CONFIG_FILE
    if not nested.is_file():
        return None
    data = read_json(nested, "processor config")
    image = data.get("image_processor") if isinstance(data, dict) else None
    if image is None:
        return None
    if not isinstance(image, dict):
        raise ValueError(f"{nested}: image_processor holds {json_kind(image)}, expected a JSON object ({{...}})")
    return image


def template_problem(folder: Path) -> str | None:
    """Why a model folder's chat template does not compile (None when it does, or there is none)."""
    import jinja2

    path = folder / TEMPLATE_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():  # transformers takes it for no template at all, and `model export` writes none
            return f"{path.name}: empty: no chat template"
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as e:
        return f"{path.name}: line {e.lineno}: not a valid chat template ({e.message})"
    except UnicodeDecodeError as e:
        return f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})"
    return None


def check_prompt(data: Any, path: Path) -> dict[str, Any]:
    """prompt.json's fields; ValueError naming the file and the problem (a list, a missing or unknown key, a type)."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds {json_kind(data)}, expected a JSON object with "
                         f"{', '.join(PROMPT_KEYS)}")
    missing = [k for k in PROMPT_KEYS if k not in data]
    unknown = [k for k in data if k not in PROMPT_KEYS]
    if missing or unknown:
        what = ([f"missing {', '.join(repr(k) for k in missing)}"] if missing else []) + \
               ([f"unknown key {', '.join(repr(k) for k in unknown)}"] if unknown else [])
        raise ValueError(f"{path}: {'; '.join(what)} (prompt.json holds exactly {', '.join(PROMPT_KEYS)})")
    for key, kind in PROMPT_KEYS.items():
        if not isinstance(data[key], kind):
            raise ValueError(f"{path}: '{key}' must be a JSON {'string' if kind is str else 'list'}, got "
                             f"{type(data[key]).__name__} {data[key]!r:.60}")
    bad = [label for label in data["labels"] if not isinstance(label, str) or not label.strip()]
    if bad:
        raise ValueError(f"{path}: 'labels' must be non-empty strings, got {bad[0]!r:.60}")
    if data["lang"] not in LANGS:
        raise ValueError(f"{path}: 'lang' must be one of {', '.join(LANGS)}, got {data['lang']!r:.60}")
    return data


def check_module_state(path: Path, expected: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor],
                       built_by: str) -> None:
    """Raise ValueError naming `path` when `saved` is not exactly `expected`'s tensors: a missing or unknown tensor,
    another shape, or a value that is not finite. `built_by` names the config keys the module is built from."""
    missing = [k for k in expected if k not in saved]
    unknown = [k for k in saved if k not in expected]
    shapes = [(k, tuple(saved[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in saved and saved[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor{'s' if len(missing) > 1 else ''} missing ({_few(missing)})")
    if unknown:
        problems.append(f"{len(unknown)} unknown tensor{'s' if len(unknown) > 1 else ''} ({_few(unknown)})")
    if shapes:
        shown = ", ".join(f"{k} is {list(s)}, the config builds {list(e)}" for k, s, e in shapes[:3])
        problems.append(f"{len(shapes)} of another shape ({shown}{' ...' if len(shapes) > 3 else ''})")
    if problems:
        raise ValueError(f"{path}: does not fit the module the checkpoint's bbuvl.yaml builds ({built_by}): "
                         f"{'; '.join(problems)}. The file and bbuvl.yaml come from different runs; re-copy the "
                         "checkpoint or use another")
    for k, v in saved.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise ValueError(f"{path}: tensor {k} holds {bad} value{'s' if bad > 1 else ''} that are not finite "
                             f"(NaN or infinity) of {math.prod(v.shape)}; the checkpoint is damaged: use another")


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
