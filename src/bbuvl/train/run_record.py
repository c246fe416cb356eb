"""What a run was started with, so that `train --resume` continues only that run.

A fresh run writes `run.json` into its output folder: the whole config as given (GRPO's section included) and
its input files by content (model.path by model/identity.py, the data files and the DeepSpeed config by
SHA-256; the label hierarchy, the shipped one too, as its tree), and the photos each data file names (SHA-256 of
each, by the name the file gives it). A resume compares the config it is given with that record, key by key, and refuses any difference
outside `MAY_CHANGE`, naming each key with its old and new value: a resumed run with another `num_queries`
would otherwise load a head that does not fit, and one with other learning rates or data would silently be a
mix of two runs. Paths are compared by what they hold, so a dataset or base model moved elsewhere resumes.

Every numbered checkpoint carries a copy of the run's record (`CHECKPOINT_RECORD`), which a resume whose folder lost
`run.json` checks against: a GRPO checkpoint's `bbuvl.yaml` cannot speak for GRPO's own data and start, and an SFT one's
names its inputs by path only. A run started before records existed is compared with its checkpoint's `bbuvl.yaml` (all
of it for SFT; `training` and `grpo` for GRPO, whose checkpoints keep the starting model's other sections, but for the
keys GRPO reads nothing from, `GRPO_UNRECORDED`). A GRPO run's record holds its user reward function by content too
(`code`: its file, its source, the user's own modules it imports, the data files and environment variables they read);
an SFT run weighing faults, the shipped token map its labels are read through, with those it weighs (`token_map`). The
record names the program too (bbuvl/versions.py): a resume under another one goes on, says so, and records at which step
the program changed (`resumed_under`).
docs/resume.md.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import site
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bbuvl.atomic import write_bytes_atomic, write_text_atomic
from bbuvl.config import Config, load_config
from bbuvl.data.digests import by_name, file_digest
from bbuvl.data.jsonfile import dumps_json, read_json
from bbuvl.data.labels import DEFAULT_HIERARCHY, DEFAULT_TOKEN_MAP, Hierarchy
from bbuvl.data.layout import ordered_labels
from bbuvl.data.schema import resolve_image
from bbuvl.data.text import show_text
from bbuvl.model.identity import identify
from bbuvl.paths import looks_local, real_path
from bbuvl.train.data_files import DataFiles
from bbuvl.train.run_dir import CHECKPOINT, CHECKPOINT_RECORD, RUN_RECORD, numbered_checkpoints
from bbuvl.versions import software, software_differences

log = logging.getLogger(__name__)

# What a resume may change: how long the run goes on (the schedule is recomputed over the new length), how often
# it logs, saves and evaluates, where it writes, how many loader processes read the data, the collator's budgets
# (a run saved before training refused overflowing ones must be able to raise them; docs/resume.md), the health
# alarms, and the prediction defaults the checkpoints carry (training never reads them).
MAY_CHANGE = ("training.max_steps", "training.num_epochs", "training.logging_steps", "training.save_steps",
              "training.eval_steps", "training.save_total_limit", "training.output_dir", "data.num_workers",
              "model.max_vision_tokens_per_batch", "data.pack_max_tokens",
              "monitor.enabled", "monitor.every_steps", "monitor.collapse_every_steps", "monitor.grad_norm_max",
              "monitor.grad_norm_window", "monitor.collapse_std", "monitor.overfit_ratio", "monitor.memory_growth_mb", "inference.")
# The keys of a GRPO checkpoint's `training` and `grpo` sections it records as no setting, not as the run's config gave
# them: GRPO reads nothing from them (rl/start_notes.py UNREAD, which tests/rl/test_start_notes.py holds this to). Its
# bbuvl.yaml is not compared by them, as an older bbu-vl's, which recorded the config's values, is not either.
GRPO_UNRECORDED = ("training.lr.detection", "training.detection_freeze_epochs")
# Keys naming a file or folder: compared by content, not by spelling.
CONTENT_KEYS = ("model.path", "data.train", "data.val", "data.teachers", "data.hierarchy", "training.deepspeed",
                "detection.caption_refit.photos")
# Data files whose photos are inputs too: a photo replaced under its name is other data in a file of the same bytes.
PHOTO_KEYS = ("data.train", "data.val", "data.teachers", "detection.caption_refit.photos")


class ResumeMismatch(ValueError):
    """A resume was given another config or other inputs than the run it would continue."""


@dataclass
class InputDigest:
    """One input of a run by content: its digest and, for a model folder, the per-file digests (a stat cache). The label
    hierarchy also by its tree (`tree`: SHA-256 of its parsed JSON, its `_doc` left out) with its labels and faults, to
    name what changed; `builtin` when it was the tree bbu-vl ships (data.hierarchy null)."""

    path: str
    digest: str
    files: list[dict[str, Any]]
    builtin: bool = False
    tree: str | None = None
    labels: list[str] | None = None
    faults: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, without the hierarchy's fields for other inputs."""
        return {k: v for k, v in vars(self).items() if k in ("path", "digest", "files") or v not in (None, False)}

    def same(self, other: "InputDigest | None") -> bool:
        """Whether `other` holds the same content: hierarchies by their trees when both record one (a file reformatted,
        or the shipped tree copied to a file, is the same tree), anything else by its digest."""
        if other is None:
            return False
        if self.tree is not None and other.tree is not None:
            return self.tree == other.tree
        return self.digest == other.digest


def may_change(key: str) -> bool:
    """True for a config key a resume may change."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MAY_CHANGE)


def flat(cfg: Config) -> dict[str, Any]:
    """The config as `section.key` -> value (JSON values), every key present."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(cfg.model_dump(mode="json"), "")
    return out


def base_gone(cfg: Config, resume: bool | str | Path = True) -> bool:
    """Whether model.path was a local folder when the run started and is no longer there: spelled as one can only be
    (paths.py `looks_local`), or recorded as one in the run's record (`demo_out/tiny-model`, spelled as a hub id could
    be), else in the copy of it carried by the checkpoint resumed from (`resume`, when it names one, as --resume-from
    does: one copied out alone) or by the run's newest. A full fine-tune's resume needs none, since each of its
    checkpoints holds every weight, the model's config and its processor."""
    path = cfg.model.path
    if os.path.exists(path):
        return False
    if looks_local(path):
        return True
    out = Path(cfg.training.output_dir)
    named = [Path(resume) / CHECKPOINT_RECORD] if isinstance(resume, (str, Path)) else []
    for record in (out / RUN_RECORD, *named, *(p / CHECKPOINT_RECORD for p in reversed(numbered_checkpoints(out)))):
        try:
            digest = json.loads(record.read_text(encoding="utf-8"))["inputs"]["model.path"]["digest"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no record there, or a damaged one (the resume's own check names it)
        return isinstance(digest, str) and not digest.startswith("name:")  # a hub id is recorded by its name
    return False


def digest_inputs(cfg: Config, previous: dict[str, InputDigest] | None = None) -> dict[str, InputDigest]:
    """Each content key's input by content (missing or hub ids by name); `previous` spares re-hashing unchanged files."""
    values = flat(cfg)
    out = {}
    for key in CONTENT_KEYS:
        value = values.get(key)
        if value is None:
            if key == "data.hierarchy":  # the shipped tree, which an upgrade of bbu-vl may change under the same config
                out[key] = _hierarchy_digest(DEFAULT_HIERARCHY, (previous or {}).get(key), builtin=True)
            continue
        path = Path(os.path.expanduser(str(value)))
        old = (previous or {}).get(key)
        known = by_name(old.files) if old else {}
        # Named where it is: a relative path resumed from another folder was "data/train.jsonl" twice, two files.
        where = str(real_path(path))
        if path.is_dir():
            ident = identify(path, known=known)
            out[key] = InputDigest(where, ident.digest, [f.to_json() for f in ident.files])
        elif path.is_file() and key == "data.hierarchy":
            out[key] = _hierarchy_digest(path, old)
        elif path.is_file():
            d = file_digest(path, path.name, {path.name: known[path.name]} if path.name in known else None)
            out[key] = InputDigest(where, d.sha256, [d.to_json()])
        else:
            out[key] = InputDigest(str(value), f"name:{value}", [])  # a hub id: its name is all there is to compare
    return out


def _hierarchy_digest(path: Path, previous: InputDigest | None, builtin: bool = False) -> InputDigest:
    """A label hierarchy file by content: its bytes' SHA-256, and its tree's with its labels and faults (none when it
    cannot be read: the run's start names why, and its bytes still speak for it)."""
    known = by_name(previous.files) if previous else {}
    d = file_digest(path, path.name, {path.name: known[path.name]} if path.name in known else None)
    found = InputDigest(str(real_path(path)), d.sha256, [d.to_json()], builtin=builtin)
    try:
        raw = read_json(path, "label hierarchy")
        tree = Hierarchy.load(path)
    except (OSError, ValueError):
        return found
    if isinstance(raw, dict):  # the loader refuses anything else
        raw.pop("_doc", None)  # documentation: an upgrade rewording it changes no label
        found.tree = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
        found.labels, found.faults = tree.labels(), sorted(tree.faults)
    return found


def digest_photos(cfg: Config, previous: dict[str, list[dict[str, Any]]] | None = None,
                  files: DataFiles | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each data file's photos (students and teachers) by content, keyed by the names the file gives them (a dataset
    moved elsewhere names the same photos); `previous` spares re-hashing photos whose stat is unchanged. A photo that
    cannot be read is recorded as such (the data reader names it)."""
    values, files = flat(cfg), files or DataFiles()
    out: dict[str, list[dict[str, Any]]] = {}
    for key in PHOTO_KEYS:
        value = values.get(key)
        path = Path(os.path.expanduser(str(value))) if value else None
        if path is None or not path.is_file():
            continue
        known = by_name((previous or {}).get(key) or [])
        found: dict[str, dict[str, Any]] = {}
        for row in files.rows(path):
            for record in (row.sample.student, *row.sample.teachers) if row.sample is not None else ():
                if record.image not in found:
                    try:
                        found[record.image] = file_digest(resolve_image(path, record.image), record.image, known).to_json()
                    except OSError:
                        found[record.image] = {"name": record.image, "sha256": "unreadable"}
        out[key] = list(found.values())
    return out


def processes() -> int:
    """How many processes train this run: torchrun's, accelerate's or DeepSpeed's WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def user_code(cfg: Config) -> dict[str, dict[str, Any]]:
    """A GRPO run's user reward function (grpo.rewards.user_function) by content: the SHA-256 of the file it is
    defined in, of its own source and of the user's own modules those import (`user_modules`); empty for other runs.
    Its name alone let a resume go on with edited code."""
    spec = cfg.grpo.rewards.called_function  # none with grpo.rewards.user 0: the run never calls it
    if cfg.training.method != "grpo" or not spec:
        return {}
    module_name, _, attr = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
    entry: dict[str, Any] = {"name": spec, "file": None, "file_sha256": None, "source_sha256": None}
    try:
        # Imported already by the run's start (rl/rewards.py `load_user_reward`, which names any failure).
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        fn = getattr(module, attr)
    except Exception:  # noqa: BLE001 - whatever the user's module raises: recorded as unreadable, named on resume
        return {"grpo.rewards.user_function": entry}
    try:
        file = inspect.getsourcefile(fn)
    except TypeError:
        file = None  # a callable object, a partial: the module it is named in holds its code
    file = file or getattr(module, "__file__", None)
    if file and os.path.isfile(file):
        entry["file"] = str(real_path(file))
        entry["file_sha256"] = _code_digest(Path(file).read_bytes())
    try:
        entry["source_sha256"] = _code_digest(inspect.getsource(fn).encode("utf-8"))
    except (OSError, TypeError):
        pass  # no source to read (a builtin, a partial): its file's digest speaks for it
    if entry["file"]:
        named = getattr(module, "__file__", None)
        defining = module_name if file == named else getattr(fn, "__module__", None) or module_name
        # The module the config names may only import the function from the one defining it: both are walked.
        unchecked: list[str] = []
        reads: dict[str, dict[str, str | None]] = {}
        environ: set[str] = set()
        entry["modules"] = user_modules((Path(entry["file"]), defining), *([(Path(named), module_name)] if named else []),
                                        unchecked=unchecked, reads=reads, environ=environ)
        if cfg.data.hierarchy is None:  # the run's own record of the shipped tree checks it (digest_inputs)
            reads.pop(_SHIPPED_KEY.format(DEFAULT_HIERARCHY.name), None)
        entry["data_files"] = reads
        entry["environment"] = {name: _environment_digest(name) for name in sorted(environ)}
        if unchecked:
            entry["unchecked_imports"] = unchecked
            _say_unchecked(spec, unchecked)
    return {"grpo.rewards.user_function": entry}


_SAID_UNCHECKED: set[str] = set()  # the call sites said, once a process: a start and its resumes both record the code


def _say_unchecked(spec: str, unchecked: list[str]) -> None:
    """Warn, once a process for each, of the imports a reward's code makes, and the files and environment variables it
    reads, by a name computed at run time."""
    new = [u for u in unchecked if u not in _SAID_UNCHECKED]
    _SAID_UNCHECKED.update(new)
    if new:
        log.warning("grpo.rewards.user_function %s: the module a call imports, or the file or environment variable "
                    "it reads, is computed at run time, so the run's record cannot name it, and a change to it would "
                    "resume unseen: %s. Name the module in a string (importlib.import_module('pkg.rules')), or import "
                    "it, and the file or variable literally (open(Path(__file__).parent / 'rules.json'), "
                    "os.environ['SCALE']), for the record to follow it", spec,
                    "; ".join(new))


def user_modules(*roots: tuple[Path, str], unchecked: list[str] | None = None,
                 reads: dict[str, dict[str, str | None]] | None = None,
                 environ: set[str] | None = None) -> dict[str, dict[str, str]]:
    """The user's own modules that the `roots` (file, module name) import, transitively, by content: module name ->
    its file and the SHA-256 of its syntax tree; every root but the first (the reward's own file, recorded beside) too.
    A helper the reward calls from another module of the user's changed unseen; the standard library, installed
    packages and bbuvl are versioned elsewhere and left out. Modules loaded at run time by a literal name
    (`importlib.import_module("pkg.rules")`, `__import__`, `runpy.run_module`) or from a literal file
    (`runpy.run_path`, `importlib.util.spec_from_file_location`, `SourceFileLoader`; keyed `file PATH`) are followed; a
    call whose name or file is computed is added to `unchecked` (`module line N: call`). The data files those modules
    read by a path their source spells, and bbu-vl's shipped label files they load, go to `reads` (`_data_files`),
    the environment variables they read by a literal name to `environ` (`_environment_reads`); a read whose path or
    name is computed to `unchecked` too."""
    found: dict[str, dict[str, str]] = {}
    todo, seen = list(roots), {roots[0][1]}
    for file, name in roots[1:]:
        if name not in seen and file.suffix == ".py" and file.is_file() and _is_users(file):
            found[name] = {"file": str(real_path(file)), "sha256": _code_digest(file.read_bytes())}
        seen.add(name)
    while todo:
        path, module = todo.pop()
        try:
            tree = ast.parse(path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable or not Python: its own digest (the reward's file, or this entry) says it changed
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names, computed = _imported_names(tree, package)
        if reads is not None:
            read, computed_reads = _data_files(tree, path)
            # A shipped file is one whichever module reads it; a user's by the module and how it spells the path
            reads.update({spelled if spelled.startswith(_SHIPPED_KEY.format("")) else f"{module}: {spelled}": entry
                          for spelled, entry in read.items()})
            computed += computed_reads
        if environ is not None:
            variables, computed_names = _environment_reads(tree)
            environ |= variables
            computed += computed_names
        if unchecked is not None:  # the reward's file is walked twice when the config names it by another module
            unchecked += [call for where in computed if (call := f"{module} line {where}") not in unchecked]
        for loaded in sorted(_loaded_files(tree)):
            # Relative to the working folder, as the call opens it in the process that records it (the run's)
            where = Path(os.path.expanduser(loaded)).absolute()
            try:
                key = f"file {real_path(where)}"
            except (OSError, ValueError):
                continue  # no path a file can have (a NUL in it): the call fails when it runs, not here
            if key not in seen and where.is_file() and _is_users(where):
                seen.add(key)
                found[key] = {"file": str(real_path(where)), "sha256": _code_digest(where.read_bytes())}
                todo.append((where, where.stem))
        for imported in sorted(names):
            if imported in seen:
                continue
            seen.add(imported)
            if not _top_is_users(imported.partition(".")[0]):
                continue  # looked up no further: finding a submodule imports its packages (an installed one's too)
            where = _module_file(imported)
            if where is not None and _is_users(where):
                found[imported] = {"file": str(real_path(where)), "sha256": _code_digest(where.read_bytes())}
                todo.append((where, imported))
    return found


def _imported_names(tree: ast.AST, package: str) -> tuple[set[str], list[str]]:
    """Every module an `import` or `from ... import` anywhere in `tree` may load (its parent packages and, for `from
    X import Y`, X.Y, which is a module or nothing), relative ones resolved within `package`, and those a call of
    `import_module` or `__import__` names in a string; then the calls whose name is computed (`N: call`, by line)."""
    names: set[str] = set()
    computed: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _import_call(node) is not None:
            targets = _call_targets(node, package)
            if targets is None:
                computed.append(f"{node.lineno}: {_shortened(ast.unparse(node))}")
                continue
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                    else node.module or ""
            except (ImportError, ValueError):
                continue  # a relative import beyond the top package: it fails when it runs, not here
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
        else:
            continue
        for target in filter(None, targets):
            parts = target.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names, computed


def _import_call(node: ast.Call) -> str | None:
    """`import_module` or `__import__` when `node` calls one (by its name, or as an attribute: `importlib.import_module`),
    else None."""
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name if name in (*_BY_NAME, *_BY_FILE) else None


# Calls loading a module by its name, and by its file with the argument (position, keyword) naming that file.
_BY_NAME = ("import_module", "__import__", "run_module")
_BY_FILE = {"run_path": (0, "path_name"), "spec_from_file_location": (1, "location"), "SourceFileLoader": (1, "path")}


def _loaded_files(tree: ast.AST) -> set[str]:
    """The files `tree` loads as code by a literal path (`runpy.run_path("rules.py")`, `spec_from_file_location`,
    `SourceFileLoader`)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (kind := _import_call(node)) in _BY_FILE:
            position, keyword = _BY_FILE[kind]
            args = {**dict(enumerate(node.args)), **{k.arg: k.value for k in node.keywords if k.arg}}
            if isinstance(path := _literal(args.get(position, args.get(keyword))), str) and path:
                out.add(path)
    return out


# Calls that open the file their argument names, and so read it: `open` (a mode that writes: the reward's own output),
# a path's own readers. A call whose path is computed is listed as unchecked. A library's readers (`json.load`,
# `np.load`, `pd.read_csv`, PIL's `Image.open`, bbu-vl's `read_json`), told by their names, take an open file or
# another object as often as a path: followed only where a file is named.
_OPENS = ("open", "io.open", "codecs.open")
_PATH_READS = ("read_text", "read_bytes")
# bbu-vl's shipped label files, read by these calls when given no file of the user's (`TokenMap.load()`,
# `Faults.load(tree)`): the argument's position and keyword. Keyed in a record `bbuvl NAME`.
_SHIPPED = {"TokenMap": {DEFAULT_TOKEN_MAP: (0, "path")}, "Hierarchy": {DEFAULT_HIERARCHY: (0, "path")},
            "Faults": {DEFAULT_HIERARCHY: (0, "hierarchy"), DEFAULT_TOKEN_MAP: (1, "token_map")}}
_SHIPPED_NAMES = {"DEFAULT_TOKEN_MAP": DEFAULT_TOKEN_MAP, "DEFAULT_HIERARCHY": DEFAULT_HIERARCHY}
_SHIPPED_KEY = "bbuvl {}"


def _data_files(tree: ast.AST, file: Path) -> tuple[dict[str, dict[str, str | None]], list[str]]:
    """The data files module `tree` (at `file`) reads by a path its source spells (`open("rules.json")`,
    `Path(__file__).parent / "x.json"`, a name given such a path once), keyed by that spelling, each with its file and
    SHA-256 (None: no such file then); bbu-vl's shipped label files it loads (`_shipped_reads`); then the reads whose
    path is computed, or whose file it writes too (`N: call`). A relative path is read from the working folder, as the
    process recording it does."""
    bound = _path_names(tree, file)
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (found_target := _read_target(node))[0] is not None:
            path = _path_of(found_target[0], bound, file)
            try:
                where = real_path(Path(os.path.expanduser(str(path))).absolute()) if path is not None else None
            except (OSError, ValueError):
                continue  # no path a file can have (a NUL in it): the call fails when it runs, not here
            calls.append((node, found_target[0], found_target[1], where))
    # A file the code writes as well (a cache, its own state) changes as the run goes: no resume could match it.
    written = {where for _, _, kind, where in calls if kind == "writes" and where is not None}
    found: dict[str, dict[str, str | None]] = {}
    computed: list[str] = []
    for node, target, kind, where in calls:
        if kind == "writes":
            continue
        if where is None:
            if kind == "opens":
                computed.append(f"{node.lineno}: {_shortened(ast.unparse(node))}")
        elif where == real_path(file):
            continue  # its own source (`open(__file__)`): recorded as code, where a comment changes nothing
        elif where in written:
            computed.append(f"{node.lineno}: {_shortened(ast.unparse(node))} (a file it writes too)")
        elif (kind == "opens" and not where.is_dir()) or where.is_file():
            found[ast.unparse(target)] = _data_digest(where)
    for shipped in sorted(_shipped_reads(tree)):
        found[_SHIPPED_KEY.format(shipped.name)] = _data_digest(shipped, tree=True)
    return found, computed


_ENVIRON = ("os.environ", "environ")
_GETENV = ("os.environ.get", "environ.get", "os.getenv", "getenv")
# Set by the launcher to differ between the processes of one run (torchrun, accelerate, DeepSpeed): each process
# checks a resume, so a reward reading its rank to log once was refused in every process but the first. The number of
# processes is checked as such (`processes`).
_PER_PROCESS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")


def _environment_reads(tree: ast.AST) -> tuple[set[str], list[str]]:
    """The environment variables `tree` reads by a literal name (`os.environ["SCALE"]`, `os.environ.get`, `os.getenv`,
    `"SCALE" in os.environ`), then the reads whose name is computed (`N: read`)."""
    names: set[str] = set()
    computed: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and ast.unparse(node.value) in _ENVIRON:
            name = _literal(node.slice)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in _GETENV and node.args:
            name = _literal(node.args[0])
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and ast.unparse(node.comparators[0]) in _ENVIRON):
            name = _literal(node.left)
        else:
            continue
        if isinstance(name, str) and name:
            if name not in _PER_PROCESS and not name.startswith("TORCHELASTIC_"):
                names.add(name)
        else:
            computed.append(f"{node.lineno}: {_shortened(ast.unparse(node))}")
    return names, computed


def _environment_digest(name: str) -> str | None:
    """SHA-256 of environment variable `name`'s value (None: unset): its value may be a key to a service, which a run's
    record must not hold."""
    value = os.environ.get(name)
    return None if value is None else hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def _read_target(node: ast.Call) -> tuple[ast.expr | None, str]:
    """The expression naming the file `node` reads or writes, if it is a call that opens one, and how: "opens" for
    certain (`open`, `Path.read_text`), "maybe" by its name only (`json.load`, `np.load`: a path or an open file), or
    "writes" (`open(..., "w")`, `Path.write_text`)."""
    func = node.func
    called = ast.unparse(func)
    args = {**dict(enumerate(node.args)), **{k.arg: k.value for k in node.keywords if k.arg}}
    if called in _OPENS or isinstance(func, ast.Attribute) and func.attr == "open" and _is_path_call(func.value):
        on_path = called not in _OPENS  # `Path(...).open(mode)`: the mode comes first
        mode = _literal(args.get(0 if on_path else 1, args.get("mode")))
        target = func.value if on_path else args.get(0, args.get("file"))
        if isinstance(target, ast.Constant) and isinstance(target.value, int):
            return None, ""  # a descriptor (`open(0)`), no file a record could name
        return target, "writes" if isinstance(mode, str) and set(mode) & set("wax+") else "opens"
    if isinstance(func, ast.Attribute) and func.attr in _PATH_READS:
        return func.value, "opens"
    if isinstance(func, ast.Attribute) and func.attr in ("write_text", "write_bytes"):
        return func.value, "writes"
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if (name.startswith(("read", "load")) or name == "open") and 0 in args:  # `open`: PIL's `Image.open(...)`
        return args[0], "maybe"
    return None, ""


def _is_path_call(node: ast.expr) -> bool:
    """Whether `node` builds a path (`Path(...)`, `pathlib.Path(...)`)."""
    return isinstance(node, ast.Call) and ast.unparse(node.func).rpartition(".")[2] in ("Path", "PurePath", "PosixPath")


def _path_of(node: ast.expr | None, bound: dict[str, Path], file: Path) -> Path | None:
    """The path `node` spells (`"rules.json"`, `__file__`, `Path(...)`, `/`, `os.path.join`, `.parent`, a name in
    `bound`), relative where it is; None when it is computed."""
    if isinstance(node, ast.Constant):
        return Path(os.fsdecode(node.value)) if isinstance(node.value, (str, bytes)) and node.value else None
    if isinstance(node, ast.Name):
        return file if node.id == "__file__" else bound.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = _path_of(node.left, bound, file), _path_of(node.right, bound, file)
        return left / right if left is not None and right is not None else None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _path_of(node.value, bound, file)
        return inner.parent if inner is not None else None
    if not isinstance(node, ast.Call) or node.keywords:
        return None
    parts = [_path_of(a, bound, file) for a in node.args]
    if any(p is None for p in parts):
        return None
    called = ast.unparse(node.func)
    if _is_path_call(node) or called in ("os.path.join", "path.join", "join"):
        return Path(*parts) if parts else Path(".")  # type: ignore[arg-type]
    if called in ("os.path.dirname", "path.dirname", "dirname") and len(parts) == 1:
        return parts[0].parent  # type: ignore[union-attr]
    if called in ("str", "os.fspath", "os.path.abspath", "os.path.realpath", "os.path.normpath", "os.path.expanduser",
                  "abspath", "realpath", "normpath", "expanduser") and len(parts) == 1:
        return parts[0]
    if isinstance(node.func, ast.Attribute):  # a path's own methods
        inner = _path_of(node.func.value, bound, file)
        if inner is None:
            return None
        if node.func.attr in ("resolve", "absolute", "expanduser") and not parts:
            return inner
        if node.func.attr == "joinpath":
            return inner.joinpath(*parts)  # type: ignore[arg-type]
        if node.func.attr in ("with_name", "with_suffix") and len(parts) == 1:
            try:
                return getattr(inner, node.func.attr)(str(parts[0]))
            except ValueError:
                return None  # a suffix or a name the call refuses: it fails when it runs, not here
    return None


def _path_names(tree: ast.AST, file: Path) -> dict[str, Path]:
    """The names `tree` binds once, anywhere, to a path its source spells (`RULES = Path(__file__).parent / "r.json"`):
    a name bound twice, or a parameter, may hold another path by the time it is read."""
    stores: dict[str, int] = {}
    assigned: list[tuple[int, int, str, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            stores[node.id] = stores.get(node.id, 0) + 1
        elif isinstance(node, ast.arg):
            stores[node.arg] = stores.get(node.arg, 0) + 1
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                assigned.append((node.lineno, node.col_offset, targets[0].id, node.value))
    bound: dict[str, Path] = {}
    for _, _, name, value in sorted(assigned, key=lambda a: a[:2]):
        if stores.get(name) == 1 and (path := _path_of(value, bound, file)) is not None:
            bound[name] = path
    return bound


def _shipped_reads(tree: ast.AST) -> set[Path]:
    """bbu-vl's shipped label files `tree` loads: `TokenMap.load()`, `Hierarchy.load()` and `Faults.load()` given no
    file of the user's for one (as imported from bbuvl), and `DEFAULT_TOKEN_MAP` or `DEFAULT_HIERARCHY` named. A
    reward judging labels through them pays other rewards once an upgrade changes them."""
    ours: dict[str, str] = {}  # local name -> what it is in bbuvl (a module: '')
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "bbuvl":
            ours.update({alias.asname or alias.name: alias.name for alias in node.names})
        elif isinstance(node, ast.Import):
            ours.update({alias.asname or "bbuvl": "" for alias in node.names if alias.name.split(".")[0] == "bbuvl"})

    def named(node: ast.expr) -> str | None:
        """What `node` is in bbuvl (`TokenMap`, `labels.TokenMap`), when it is reached from an import of bbuvl."""
        if isinstance(node, ast.Name):
            return ours.get(node.id) or None
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        return node.attr if isinstance(node, ast.Attribute) and isinstance(root, ast.Name) and root.id in ours else None

    found: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and named(node) in _SHIPPED_NAMES:
            found.add(_SHIPPED_NAMES[named(node)])  # type: ignore[index]
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"):
            continue
        args = {**dict(enumerate(node.args)), **{k.arg: k.value for k in node.keywords if k.arg}}
        for shipped, (position, keyword) in _SHIPPED.get(named(node.func.value) or "", {}).items():
            given = args.get(position, args.get(keyword))
            if given is None or isinstance(given, ast.Constant) and given.value is None:
                found.add(shipped)
    return found


def _data_digest(path: Path, tree: bool = False) -> dict[str, str | None]:
    """A data file a reward reads, by content: its file and SHA-256, None when it cannot be read (no such file: the
    reward may read a default then). `tree`: a shipped label file, by its parsed JSON with its `_doc` left out, as the
    run's own record of the shipped hierarchy is (an upgrade rewording documentation changes no label)."""
    if not path.is_file():  # nothing there, or a pipe or a device, which reading would wait on or drain
        return {"file": str(real_path(path)), "sha256": None}
    try:
        with path.open("rb") as f:
            if not tree:  # read in chunks: a reward may read a large array
                return {"file": str(real_path(path)), "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
            data = f.read()
    except OSError:
        return {"file": str(real_path(path)), "sha256": None}
    try:
        raw = json.loads(data)
        if isinstance(raw, dict):
            raw.pop("_doc", None)
        data = json.dumps(raw, sort_keys=True, ensure_ascii=False).encode("utf-8")
    except ValueError:
        pass  # its bytes speak for it
    return {"file": str(real_path(path)), "sha256": hashlib.sha256(data).hexdigest()}


def _call_targets(node: ast.Call, package: str) -> list[str] | None:
    """The modules an `import_module(name, package)` or `__import__(name, globals, locals, fromlist, level)` call loads
    (its `fromlist`'s names as submodules), relative names resolved as Python would; None when its name, or what
    resolving it needs, is no literal."""
    kind = _import_call(node)
    args = {**dict(enumerate(node.args)), **{k.arg: k.value for k in node.keywords if k.arg}}
    if kind in _BY_FILE:  # followed by its file (`_loaded_files`) when that is a literal
        position, keyword = _BY_FILE[kind]
        return [] if isinstance(_literal(args.get(position, args.get(keyword))), str) else None
    name = _literal(args.get(0, args.get("name", args.get("mod_name"))))
    if not isinstance(name, str) or not name:
        return None
    if kind == "run_module":
        return [name]
    if kind == "import_module":
        if not name.startswith("."):
            return [name]
        anchor = args.get(1, args.get("package"))
        base = package if isinstance(anchor, ast.Name) and anchor.id == "__package__" else _literal(anchor)
        try:
            return [importlib.util.resolve_name(name, base)] if isinstance(base, str) else None
        except (ImportError, ValueError):
            return []  # beyond the top package: it fails when it runs, not here
    level = _literal(args.get(4, args.get("level", ast.Constant(0))))
    fromlist = _literal(args.get(3, args.get("fromlist", ast.Constant(None)))) or ()
    if not isinstance(level, int) or not isinstance(fromlist, (list, tuple)):
        return None
    try:
        base = importlib.util.resolve_name("." * level + name, package) if level else name
    except (ImportError, ValueError):
        return []
    return [base, *(f"{base}.{x}" for x in fromlist if isinstance(x, str) and x != "*")]


def _literal(node: ast.AST | None) -> Any:
    """The value of `node` when it is a literal (a string, a number, a list of them), else None."""
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _shortened(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[:most - 3] + "..."


def _module_file(name: str) -> Path | None:
    """The source file of module `name` as this process would import it (loaded already, else found), or None."""
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None) if module is not None else None
    if file is None and module is None:
        try:
            spec = importlib.util.find_spec(name)
        except Exception:  # noqa: BLE001 - a parent package that raises, a name that is no module: nothing to record
            return None
        file = spec.origin if spec is not None and spec.has_location else None
    return Path(file) if file and file.endswith(".py") and os.path.isfile(file) else None


def _top_is_users(name: str) -> bool:
    """Whether top-level module or package `name` lies in the user's folders, found without importing it (a namespace
    package by its folders)."""
    module = sys.modules.get(name)
    if module is not None:
        places = [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or [])]
    else:
        try:
            spec = importlib.util.find_spec(name)
        except Exception:  # noqa: BLE001 - a name that is no module: nothing to record
            return False
        if spec is None:
            return False
        places = [spec.origin if spec.has_location else None, *(spec.submodule_search_locations or [])]
    return any(isinstance(p, str) and _is_users(Path(p)) for p in places)


@functools.cache
def _not_users() -> tuple[Path, ...]:
    """The folders whose modules are not the user's: the standard library, installed packages and bbuvl itself."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages(), str(Path(__file__).parents[1])}
    return tuple(real_path(r) for r in roots)


def _is_users(file: Path) -> bool:
    """Whether `file` is a module of the user's own (outside `_not_users`, and in no site- or dist-packages folder)."""
    where = real_path(file)
    return (not any(where.is_relative_to(root) for root in _not_users())
            and not {"site-packages", "dist-packages"} & set(where.parts))


def _code_digest(source: bytes) -> str:
    """SHA-256 of Python source as its syntax tree: a comment or a blank line edited is the same code, and refusing
    the resume for it left only putting the old text back. Source that does not parse is hashed as it is."""
    try:
        source = ast.dump(ast.parse(textwrap.dedent(source.decode("utf-8")))).encode("utf-8")
    except (SyntaxError, ValueError):  # ValueError: undecodable bytes, or a NUL in the text
        pass
    return hashlib.sha256(source).hexdigest()


def weighed_faults(cfg: Config, files: DataFiles | None = None) -> dict[str, Any] | None:
    """The shipped token map an SFT run weighs faults through (`loss.fault_weight`), by its parsed tree, with the
    training labels it weighs as faults (train/trainer.py `fault_captions`); None for a run that weighs none (GRPO, no
    head, a weight of 1) or whose data cannot be read (its start names why). A label spelt as a platform spells it
    (`windshield/not_installed`) is a fault only as the token map maps it, and the run has no key naming the map: an
    upgrade of bbu-vl that changed it weighed other objects in the resumed steps."""
    if cfg.training.method == "grpo" or not cfg.detection.enabled or cfg.loss.fault_weight == 1:
        return None
    values, files = flat(cfg), files or DataFiles()
    try:
        faults = files.faults(cfg.data.hierarchy)
        paths = [os.path.expanduser(values[key]) for key in ("data.train", "data.val") if values.get(key)]
        seen = [o.desc for path in paths if os.path.isfile(path) for row in files.rows(path) if row.sample is not None
                for o in row.sample.student.objects]
    except (OSError, ValueError):
        return None
    return {**_data_digest(DEFAULT_TOKEN_MAP, tree=True),
            "faults": [label for label in ordered_labels(seen, faults.hierarchy) if faults.is_fault(label)]}


def run_record(cfg: Config, files: DataFiles | None = None) -> dict[str, Any]:
    """A fresh run's record: its config, inputs and their photos by content, number of processes, user code and the
    token map its faults are weighed through."""
    record = {"config": cfg.model_dump(mode="json"),
              "inputs": {k: v.to_json() for k, v in digest_inputs(cfg).items()}, "processes": processes(),
              "photos": digest_photos(cfg, files=files), "code": user_code(cfg), "software": software()}
    if (token_map := weighed_faults(cfg, files)) is not None:
        record["token_map"] = token_map
    return record


def write_run_record(output_dir: str | Path, cfg: Config, files: DataFiles | None = None) -> None:
    """Record a fresh run's config, inputs, their photos and number of processes in its output folder (`run.json`)."""
    # dumps_json: the paths of a run started in a folder named in GBK bytes are kept as JSON escapes, which read back as
    # they were; the run failed writing them, naming no file
    write_text_atomic(Path(output_dir) / RUN_RECORD, dumps_json(run_record(cfg, files), indent=1) + "\n")


def carry_run_record(output_dir: str | Path, checkpoint: str | Path) -> None:
    """Copy the run's record (`output_dir`'s run.json) into the checkpoint being saved (`CHECKPOINT_RECORD`), so that a
    resume whose folder lost run.json still checks what the run was started with; nothing when there is none, nor into
    final/, which is never resumed and which other runs start from."""
    record = Path(output_dir) / RUN_RECORD
    if record.is_file() and CHECKPOINT.match(Path(checkpoint).name):
        write_bytes_atomic(Path(checkpoint) / CHECKPOINT_RECORD, record.read_bytes())


def check_resume(cfg: Config, checkpoint: str | Path, files: DataFiles | None = None,
                 accept_code: bool = False) -> list[str]:
    """Raise ResumeMismatch, naming every differing key (old and new values), when `cfg` is not the config and
    inputs of the run `checkpoint` belongs to (its folder's `run.json`, else the checkpoint's `bbuvl.yaml`); the data
    files are read through `files` when given (train/data_files.py). With `accept_code`, edited user reward code is
    no mismatch: how it changed is returned instead (`record_accepted_code` then records it)."""
    accepted: list[str] = []
    edited: list[str] = []  # the reward code's changes alone: what --accept-reward-code lets a resume go on with
    checkpoint = Path(checkpoint)
    record_path = record_of(checkpoint)
    carried = record_path.name == CHECKPOINT_RECORD
    new = flat(cfg)
    if record_path.is_file():
        old, inputs, ran_on, photos, code, token_map = _read_record(record_path)
        _check_method(checkpoint, record_path, old.get("training.method"), cfg.training.method)
        diffs = [_phrase(k, old.get(k, "<unset>"), new.get(k, "<unset>")) for k in _differing(old, new, CONTENT_KEYS)]
        if ran_on is not None and ran_on != processes():
            # Each step averages per_device_batch_size x gradient_accumulation_steps x processes samples, and HF
            # skips the batches already seen by counting them: another count is another batch and another order.
            diffs.append(f"processes (WORLD_SIZE) {ran_on} (now {processes()}): each step would average "
                         f"{ran_on} process(es)' batches before, {processes()} after")
        now = digest_inputs(cfg, inputs)
        for key in CONTENT_KEYS:
            was, is_ = inputs.get(key), now.get(key)
            if key == "model.path" and not cfg.model.lora.enabled and base_gone(cfg, checkpoint):
                continue  # the checkpoint holds every weight, and the resume builds the model from it (train/trainer.py)
            if key == "data.hierarchy" and was is None and is_ is not None and is_.builtin and old.get(key) is None:
                continue  # a run recorded before the shipped tree was: unchecked, as before
            if key == "data.hierarchy" and was is not None and is_ is not None:
                if not was.same(is_):
                    diffs.append(_hierarchy_phrase(was, is_))
            elif (was.digest if was else None) != (is_.digest if is_ else None):
                diffs.append(_content_phrase(key, was, is_))
            elif photos is not None and key in photos and is_ is not None:  # a run recorded before photos were: unchecked
                diffs += _photo_phrase(key, is_.path, photos[key], digest_photos(cfg, photos, files).get(key, []))
        if token_map is not None and (now_map := weighed_faults(cfg, files)) is not None:
            diffs += _token_map_phrase(token_map, now_map)
        if code is not None:  # a run recorded before its code was: unchecked
            edited = _code_phrases(code, user_code(cfg))
            if accept_code:
                accepted = edited
            else:
                diffs += edited
        diffs += _trained_elsewhere(checkpoint, old, cfg.training.method)
        if not carried:
            diffs += _recorded_elsewhere(checkpoint, old, inputs)
        source = f"{record_path} (what the run was started with{', as its checkpoint carries it' if carried else ''})"
    else:
        try:
            saved = load_config(checkpoint / "bbuvl.yaml")
        except ValueError as e:
            raise ResumeMismatch(f"{checkpoint}: cannot read the config it was trained with ({e})") from None
        old = flat(saved)
        _check_method(checkpoint, checkpoint / "bbuvl.yaml", old.get("training.method"), cfg.training.method)
        method = cfg.training.method
        diffs = [_phrase(k, old.get(k, "<unset>"), new.get(k, "<unset>"))
                 for k in _differing(old, new, _unrecorded(method), _checkpoint_sections(method))
                 if not _same_path(k, old.get(k), new.get(k))]
        source = f"{checkpoint / 'bbuvl.yaml'} (the config that checkpoint trained with)"
    if diffs:
        # --overwrite replaces the run in training.output_dir; resumed from another folder's checkpoint, it is refused
        # beside --resume-from, so it is offered only for this folder's own run
        here = real_path(checkpoint).is_relative_to(real_path(Path(cfg.training.output_dir)))
        raise ResumeMismatch(
            f"--resume from {checkpoint}: this config differs from {source}: " + "; ".join(diffs) +
            ". Resuming would continue one run with another's settings. A resume may change only "
            f"{', '.join(k + '*' if k.endswith('.') else k for k in MAY_CHANGE)}. " +
            ("Start a new run in another training.output_dir (set model.path to a checkpoint to start from its "
             "weights), put the old values back, or pass --overwrite to replace this run" if here else
             "Start a new run without --resume-from (set model.path to the checkpoint to start from its weights), "
             "or put the old values back") +
            ("; to go on with reward code edited on purpose, pass --accept-reward-code"
             if edited and not accept_code else ""))
    return accepted


def record_accepted_code(output_dir: str | Path, cfg: Config, step: int, changes: list[str]) -> None:
    """Record in the run's run.json the user reward code a resume went on with (`--accept-reward-code`): its new
    digests, which the next resume checks against, and at which step it changed and how (`code_accepted`)."""
    path = Path(output_dir) / RUN_RECORD
    record = read_json(path, "run record")
    record["code"] = user_code(cfg)
    record.setdefault("code_accepted", []).append({"step": step, "changes": changes})
    write_text_atomic(path, dumps_json(record, indent=1) + "\n")


def record_of(checkpoint: Path) -> Path:
    """The record a resume from `checkpoint` checks against: its folder's run.json, else, when that is gone (deleted,
    or the checkpoint copied out alone), the checkpoint's copy; the folder's run.json when neither is there."""
    folder, carried = checkpoint.parent / RUN_RECORD, checkpoint / CHECKPOINT_RECORD
    return carried if not folder.is_file() and carried.is_file() else folder


# Every run record names the program since records did (`run_record`): one naming none was written by an older
# bbu-vl, another program than any now running, whose steps this one's cannot repeat bit for bit (docs/resume.md).
UNRECORDED_SOFTWARE = ("the program it ran under is not recorded (its run record names none: an older bbu-vl, from "
                       "before records named the program)")


def software_before(checkpoint: str | Path) -> dict[str, str] | None:
    """The program the run of `checkpoint` last ran under, as its record (`record_of`) names it; None when none does."""
    path = record_of(Path(checkpoint))
    recorded = read_json(path, "run record").get("software") if path.is_file() else None
    named = isinstance(recorded, dict) and recorded and all(isinstance(v, str) for v in recorded.values())
    return recorded if named else None


def software_changes(checkpoint: str | Path) -> list[str]:
    """How the program now running differs from the one the run of `checkpoint` last ran under (`software_before`),
    each as 'name OLD (now NEW)'; empty when alike. A run whose record names no program (or that has no record) ran
    under an older bbu-vl: UNRECORDED_SOFTWARE says so."""
    before = software_before(checkpoint)
    return [UNRECORDED_SOFTWARE] if before is None else software_differences(before, software())


def record_resumed_software(output_dir: str | Path, step: int, was: dict[str, str] | None) -> None:
    """Record in the run's run.json that it went on at `step` under the program now running (`resumed_under`), which the
    next resume compares with: the steps before were computed by another, `was` (None: not recorded). Taken before the
    resume wrote a run.json of its own, where the run had none: that one names the program now running."""
    path = Path(output_dir) / RUN_RECORD
    record = read_json(path, "run record")
    record.setdefault("resumed_under", []).append({"step": step, "software": software(), "was": was})
    record["software"] = software()
    write_text_atomic(path, dumps_json(record, indent=1) + "\n")


def _trained_elsewhere(checkpoint: Path, recorded: dict[str, Any], method: str) -> list[str]:
    """Where `checkpoint`'s own bbuvl.yaml differs from the run record's config, outside what a resume may change and
    the inputs' paths: a checkpoint copied or linked in from another run. The record alone passed it, and the run
    went on from the other run's weights and optimizer under this one's settings. A GRPO checkpoint keeps the
    starting model's other sections, so only `training` and `grpo` are compared there."""
    path = checkpoint / "bbuvl.yaml"
    if not path.is_file():
        return []
    try:
        saved = flat(load_config(path))
    except ValueError:
        return []  # a damaged config: the checkpoint's own checks name it (train/resume_records.py)
    return [f"{path} was trained with {k} {saved.get(k, '<unset>')!r} where the run's record holds "
            f"{recorded.get(k, '<unset>')!r} (a checkpoint of another run)"
            for k in _differing(saved, recorded, (*CONTENT_KEYS, "training.output_dir", *_unrecorded(method)),
                                _checkpoint_sections(method))]


def _recorded_elsewhere(checkpoint: Path, recorded: dict[str, Any], inputs: dict[str, InputDigest]) -> list[str]:
    """Where the run record `checkpoint` carries (a GRPO checkpoint's) differs from the folder's, outside what a resume
    may change: a checkpoint of another run copied or linked in. Its bbuvl.yaml keeps the start's data section, so
    one trained on other data with the same settings passed `_trained_elsewhere`, and the run went on from it."""
    path = checkpoint / CHECKPOINT_RECORD
    if not path.is_file():
        return []
    try:
        config, carried, _, _, _, _ = _read_record(path)
    except ResumeMismatch:
        return []  # a damaged copy: the folder's own record speaks for the run
    out = [f"{path} was recorded with {k} {config.get(k, '<unset>')!r} where the run's record holds "
           f"{recorded.get(k, '<unset>')!r} (a checkpoint of another run)"
           for k in _differing(config, recorded, (*CONTENT_KEYS, "training.output_dir"))]
    for key in CONTENT_KEYS:
        was, is_ = carried.get(key), inputs.get(key)
        digests = (was.digest if was else None, is_.digest if is_ else None)
        if digests[0] == digests[1] or any(d is not None and d.startswith("name:") for d in digests):
            continue  # a folder gone since one of the two was written is recorded by its name: no content to compare
        out.append(f"{path} was recorded with {key} {was.path if was else None!r} of other content than the run's "
                   f"record's {is_.path if is_ else None!r} (a checkpoint of another run)")
    return out


def _check_method(checkpoint: Path, source: Path, old: Any, new: str) -> None:
    """Refuse a resume with another training.method in one line: among the other keys the two methods' configs set
    apart (grpo's group size, sft's teachers), the one that matters was lost in a list of fifteen."""
    if old is None or old == new:
        return
    raise ResumeMismatch(f"--resume from {checkpoint}: the run was trained with training.method {old} ({source}), and "
                         f"this config says {new}: a run cannot change its method. To go on from this checkpoint with "
                         f"{new}, start a new run with model.path set to it and a training.output_dir of its own")


def _read_record(path: Path) -> tuple[dict[str, Any], dict[str, InputDigest], int | None,
                                      dict[str, list[dict[str, Any]]] | None, dict[str, dict[str, Any]] | None,
                                      dict[str, Any] | None]:
    """A run record's config (flat), inputs, number of processes, photos, user code and the token map its faults are
    weighed through (None: recorded before they were, or no fault weighed)."""
    data = read_json(path, "run record")
    try:
        config = flat(Config.model_validate(data["config"]))
        inputs = {k: _input_digest(v) for k, v in data["inputs"].items()}
        ran_on = data.get("processes")
        if ran_on is not None and (not isinstance(ran_on, int) or isinstance(ran_on, bool) or ran_on < 1):
            raise ValueError(f"processes is {ran_on!r}, not a count")
        photos = data.get("photos")
        if photos is not None and not (isinstance(photos, dict) and all(
                isinstance(v, list) and all(isinstance(p, dict) and isinstance(p.get("name"), str)
                                            and isinstance(p.get("sha256"), str) for p in v) for v in photos.values())):
            raise ValueError("photos is not a list of named digests per data file")
        code = data.get("code")
        if code is not None and not (isinstance(code, dict) and all(isinstance(v, dict) for v in code.values())):
            raise ValueError("code is not a digest per user function")
        for entry in (code or {}).values():
            modules = entry.get("modules")
            if modules is not None and not (isinstance(modules, dict) and all(
                    isinstance(m, dict) and isinstance(m.get("file"), str) and isinstance(m.get("sha256"), str)
                    for m in modules.values())):
                raise ValueError("code's modules are not a file and digest per module")
            read = entry.get("data_files")
            if read is not None and not (isinstance(read, dict) and all(
                    isinstance(f, dict) and isinstance(f.get("file"), str)
                    and isinstance(f.get("sha256"), (str, type(None))) for f in read.values())):
                raise ValueError("code's data_files are not a file and digest per file read")
            env = entry.get("environment")
            if env is not None and not (isinstance(env, dict) and all(isinstance(v, (str, type(None)))
                                                                      for v in env.values())):
                raise ValueError("code's environment is not a digest per variable read")
        token_map = data.get("token_map")
        if token_map is not None and not (isinstance(token_map, dict) and isinstance(token_map.get("sha256"), str)
                                          and isinstance(token_map.get("faults"), list)
                                          and all(isinstance(x, str) for x in token_map["faults"])):
            raise ValueError("token_map is not a digest with the labels weighed as faults")
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ResumeMismatch(f"{path}: damaged run record ({type(e).__name__}: {e}); it says what this run was started "
                             "with, so the run cannot be resumed safely: pass --overwrite to start it over") from None
    return config, inputs, ran_on, photos, code, token_map


def _input_digest(entry: dict[str, Any]) -> InputDigest:
    """One input as a run record holds it (a hierarchy's tree fields only where they are of their types)."""
    labels, faults = entry.get("labels"), entry.get("faults")
    return InputDigest(entry["path"], entry["digest"], list(entry.get("files") or []), entry.get("builtin") is True,
                       entry["tree"] if isinstance(entry.get("tree"), str) else None,
                       labels if isinstance(labels, list) and all(isinstance(x, str) for x in labels) else None,
                       faults if isinstance(faults, list) and all(isinstance(x, str) for x in faults) else None)


def _checkpoint_sections(method: str) -> tuple[str, ...]:
    """The config sections a checkpoint's own bbuvl.yaml speaks for: GRPO's keep the starting model's others."""
    return ("training.", "grpo.") if method == "grpo" else ("",)


def _unrecorded(method: str) -> tuple[str, ...]:
    """The keys of those sections a checkpoint's bbuvl.yaml does not record as the run's config gave them."""
    return GRPO_UNRECORDED if method == "grpo" else ()


def _differing(old: dict[str, Any], new: dict[str, Any], skip: tuple[str, ...] = (),
               sections: tuple[str, ...] = ("",)) -> list[str]:
    """The keys of two flat configs, in `sections`, whose values differ, other than `skip` and what a resume may change."""
    return [k for k in sorted(set(old) | set(new)) if k.startswith(sections) and k not in skip and not may_change(k)
            and old.get(k, "<unset>") != new.get(k, "<unset>")]


def _same_path(key: str, old: Any, new: Any) -> bool:
    """Whether the two values of a key naming a file name the same one: a checkpoint records its data files where they
    were (train/trainer.py `with_data_located`), and the config resuming it may spell them as typed."""
    return (key in CONTENT_KEYS and isinstance(old, str) and isinstance(new, str)
            and real_path(os.path.expanduser(old)) == real_path(os.path.expanduser(new)))


def _phrase(key: str, old: Any, new: Any) -> str:
    return f"{key} {old!r} (now {new!r})"


def _photo_phrase(key: str, path: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """How the photos of data file `key` differ from those recorded (none: an empty list), naming the first."""
    was, now = {p["name"]: p["sha256"] for p in old}, {p["name"]: p["sha256"] for p in new}
    changed = sorted(name for name in was.keys() | now.keys() if was.get(name) != now.get(name))
    if not changed:
        return []
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return [f"{key} {path!r}: photo {changed[0]}{more} changed in place (the file names the same photos, another "
            "picture is under the name)"]


def _code_phrases(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """How the user code recorded differs from the code this resume would run (none: an empty list)."""
    out = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key) or {}, new.get(key) or {}
        if was.get("name") != now.get("name"):
            continue  # another function, or none: the config's own key names it
        out += _module_phrases(key, now.get("name"), was.get("modules"), now.get("modules") or {})
        out += _data_phrases(key, now.get("name"), was.get("data_files"), now.get("data_files") or {})
        out += _environment_phrases(key, now.get("name"), was.get("environment"), now.get("environment") or {})
        if was.get("file_sha256") == now.get("file_sha256") and was.get("source_sha256") == now.get("source_sha256"):
            continue  # the same code, wherever its file now is
        file = now.get("file") or was.get("file")
        where = f"{was.get('file')!r}" + (f" (now {now.get('file')!r})" if now.get("file") != was.get("file") else "")
        if now.get("file_sha256") is None:
            out.append(f"{key} {now.get('name') or was.get('name')}: its source file {where} cannot be read now")
        elif was.get("source_sha256") != now.get("source_sha256"):
            out.append(f"{key} {now.get('name')}: its source changed since the run started ({file!r}); the run's "
                       "rewards so far were paid by the old code")
        else:
            same = (" (the function's own source is the same; code it calls there may not be)"
                    if now.get("source_sha256") is not None else "")  # a callable object: its file alone is known
            out.append(f"{key} {now.get('name')}: the file it is defined in, {where}, changed since the run started{same}")
    return out


def _module_phrases(key: str, name: str | None, old: dict[str, dict[str, str]] | None,
                    new: dict[str, dict[str, str]]) -> list[str]:
    """How the user's own modules the reward imports differ from those recorded, each named with its file (none: an
    empty list; a record from before they were recorded: unchecked)."""
    if old is None:
        return []
    out = []
    for module in sorted(old.keys() | new.keys()):
        was, now = old.get(module), new.get(module)
        if (was or {}).get("sha256") == (now or {}).get("sha256"):
            continue  # the same code, wherever its file now is
        if was is None:
            out.append(f"{key} {name}: it now imports module {module} ({now['file']!r}), which it did not when the run "
                       "started")
        elif now is None:
            out.append(f"{key} {name}: module {module} ({was['file']!r}), which it imported when the run started, "
                       "cannot be found now")
        elif module.startswith("file "):  # loaded from its file (`_loaded_files`): the key is that file
            out.append(f"{key} {name}: {was['file']!r}, which it loads as code, changed since the run started")
        else:
            where = f"{was['file']!r}" + (f" (now {now['file']!r})" if now["file"] != was["file"] else "")
            out.append(f"{key} {name}: module {module} {where}, which it imports, changed since the run started")
    return out


def _data_phrases(key: str, name: str | None, old: dict[str, dict[str, str | None]] | None,
                  new: dict[str, dict[str, str | None]]) -> list[str]:
    """How the data files the reward reads (`_data_files`) differ from those recorded, each named by how its code
    spells it and where it is (none: an empty list; a record from before they were recorded: unchecked)."""
    if old is None:
        return []
    out = []
    for spelled in sorted(old.keys() | new.keys()):
        was, now = old.get(spelled), new.get(spelled)
        if was is not None and now is not None and was["sha256"] == now["sha256"]:
            continue  # the same content, wherever it is read from now
        shipped = spelled.startswith(_SHIPPED_KEY.format(""))
        module, _, path = spelled.partition(": ")
        what = (f"bbu-vl's shipped {spelled.removeprefix(_SHIPPED_KEY.format(''))}" if shipped
                else f"the file {module} reads as {path}")
        if was is None:  # its code changed too, which is named beside
            out.append(f"{key} {name}: it now reads {what} ({now['file']!r}), which it did not when the run started")
            continue
        if now is None:
            out.append(f"{key} {name}: it no longer reads {what} ({was['file']!r}), which it did when the run started")
            continue
        where = f"{was['file']!r}" + (f" (now {now['file']!r})" if now["file"] != was["file"] else "")
        if now["sha256"] is None:
            state = "cannot be read now"
        elif was["sha256"] is None:
            state = "was not there when the run started, and is now"
        else:
            state = "changed since the run started" + (" (bbu-vl upgraded since?)" if shipped else "")
        out.append(f"{key} {name}: {what}, {where}, {state}; the run's rewards so far were paid with what it held then")
    return out


def _environment_phrases(key: str, name: str | None, old: dict[str, str | None] | None,
                         new: dict[str, str | None]) -> list[str]:
    """How the environment variables the reward reads differ from those recorded (none: an empty list; a record from
    before they were recorded: unchecked)."""
    if old is None:
        return []
    out = []
    for variable in sorted(old.keys() & new.keys()):  # one read or no longer read: its code changed, named beside
        was, now = old[variable], new[variable]
        if was == now:
            continue
        state = ("is unset now" if now is None else "is set now, and was not when the run started" if was is None
                 else "holds another value than when the run started (recorded by its SHA-256 only)")
        out.append(f"{key} {name}: environment variable {variable}, which its code reads, {state}; the run's rewards "
                   "so far were paid with the value it held then")
    return out


def _token_map_phrase(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How the labels weighed as faults differ once the shipped token map changed (none: an empty list; a map changed
    where none of the run's labels is read through it weighs the same objects, and goes on)."""
    if old["sha256"] == new["sha256"] or old["faults"] == new["faults"]:
        return []

    def some(names: list[str]) -> str:
        return ", ".join(show_text(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    changes = []
    if gone := [x for x in old["faults"] if x not in new["faults"]]:
        changes.append(f"{some(gone)} no longer weighed as {'a fault' if len(gone) == 1 else 'faults'}")
    if added := [x for x in new["faults"] if x not in old["faults"]]:
        changes.append(f"{some(added)} now weighed as {'a fault' if len(added) == 1 else 'faults'}")
    return [f"loss.fault_weight: bbu-vl's shipped token map ({new.get('file')!r}) is not the one the run started with "
            f"(bbu-vl upgraded since?), and it maps the training labels otherwise: {'; '.join(changes)}, where the "
            "run's steps so far weighed the others. To go on, resume under the bbu-vl the run started with"]


def _hierarchy_phrase(old: InputDigest, new: InputDigest) -> str:
    """How the label hierarchy differs from the one the run started with, named as the built-in tree or by its file,
    and what changed in it: labels, faults, their order, or only the words the prompt describes them with."""
    def named(d: InputDigest) -> str:
        return f"the built-in label tree ({d.path!r})" if d.builtin else repr(d.path)

    if old.builtin and new.builtin:
        head = (f"data.hierarchy: the built-in label tree of this bbu-vl ({new.path!r}) is not the one the run started "
                "with (bbu-vl upgraded since?)")
    elif old.builtin or new.builtin:
        head = f"data.hierarchy {named(old)} (now {named(new)}): another label tree"
    else:
        head = _content_phrase("data.hierarchy", old, new)
    changes = _tree_changes(old, new)
    return (head + (f": {changes}" if changes else "") + "; the labels' levels, faults and prompt would change "
            "mid-run. To go on, pass the tree it started with as data.hierarchy" +
            (" (the hierarchy.json of the bbu-vl it started with)" if old.builtin else ""))


def _tree_changes(old: InputDigest, new: InputDigest) -> str:
    """The labels and faults one hierarchy has and the other lacks, a few named; '' when either was not read."""
    if old.labels is None or new.labels is None:
        return ""

    def some(names: list[str]) -> str:
        return ", ".join(show_text(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    out = []
    for what, was, now in (("label", old.labels, new.labels), ("fault", old.faults or [], new.faults or [])):
        if gone := [n for n in was if n not in set(now)]:
            out.append(f"{what}s {some(gone)} no longer in it" if len(gone) > 1 else f"{what} {some(gone)} no longer in it")
        if added := [n for n in now if n not in set(was)]:
            out.append(f"{what}s {some(added)} new" if len(added) > 1 else f"{what} {some(added)} new")
    if not out:
        out.append("its labels' order changed (the prompt lists them in it)" if old.labels != new.labels else
                   "the same labels and faults, other words (glosses or cues, which the prompt describes them with)")
    return "; ".join(out)


def _content_phrase(key: str, old: InputDigest | None, new: InputDigest | None) -> str:
    if old is None or new is None:
        return _phrase(key, old.path if old else None, new.path if new else None)
    where = f"{old.path!r}" + (f" (now {new.path!r})" if old.path != new.path else "")
    return f"{key} {where}: its content changed"
