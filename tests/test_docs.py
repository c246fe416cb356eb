"""README.md and docs/ say what runs: every option they give a `bbuvl` command or a bench script is one of its
options, and every docs/*.md section they, a config, a bench script or a module's comment cite is there."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import typer.main

from bbuvl.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CITERS = [*DOCS, *sorted((ROOT / "configs").rglob("*.yaml")), *sorted((ROOT / "bench").rglob("*.py")),
          *sorted((ROOT / "src" / "bbuvl").rglob("*.py"))]

# A command as the docs write it: `bbuvl data convert ...`, or under torchrun `-m bbuvl.cli train ...`.
COMMAND = re.compile(r"\bbbuvl(?:\.cli)? ((?:[a-z][a-z-]* ?)+)")
BARE = re.compile(r"((?:[a-z][a-z-]* )+)(?=-)")
BENCH = re.compile(r"\bbench/(\w+)\.py\b")
OPTION = re.compile(r"(?<![\w/.`-])(--[a-z][\w-]*)")
# A citation: docs/NAME.md, then the sections it names in quotes ("A", "B"), across a wrapped line or comment.
CITATION = re.compile(r"docs/([\w.-]+\.md)`?((?:(?:,| and| or)?\s+(?:#\s*)?\"[^\"\n]+\")*)")


def code_spans(text: str) -> list[tuple[int, str]]:
    """Each fenced code line and each inline `code` span of a Markdown text, with its line number."""
    spans, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            spans.append((number, line.split(" # ")[0]))
        else:
            spans.extend((number, span) for span in re.findall(r"`([^`]+)`", line))
    return spans


@cache
def commands() -> dict[str, set[str]]:
    """Every `bbuvl` command's words ("data convert") and the option spellings it takes."""
    found: dict[str, set[str]] = {}

    def walk(command, words: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*words, name])
        else:
            found[" ".join(words)] = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}

    walk(typer.main.get_command(app), [])
    return found


@cache
def bench_options(name: str) -> set[str]:
    """The options a bench script's argparse declares."""
    return set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", (ROOT / "bench" / f"{name}.py").read_text()))


def named_options(span: str) -> tuple[str, set[str]] | None:
    """The program a code span runs (`bbuvl CMD` or a bench script) and the options it gives it, else None."""
    if m := COMMAND.search(span):
        words = m.group(1).split()
        for n in range(len(words), 0, -1):
            if " ".join(words[:n]) in commands():
                return f"bbuvl {' '.join(words[:n])}", set(OPTION.findall(span[m.end():]))
        return None
    # A command named without the program, as prose names one: `data convert --lang en`, `predict --tiles auto`.
    if (m := BARE.match(span.strip())) and m.group(1).strip() in commands():
        return f"bbuvl {m.group(1).strip()}", set(OPTION.findall(span.strip()[m.end():]))
    if (m := BENCH.search(span)) and (ROOT / "bench" / f"{m.group(1)}.py").is_file():
        return f"bench/{m.group(1)}.py", set(OPTION.findall(span[m.end():]))
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_option_a_doc_gives_a_command_is_one_of_its_options(doc):
    wrong = []
    for number, span in code_spans(doc.read_text(encoding="utf-8")):
        if (named := named_options(span)) is None:
            continue
        program, given = named
        known = commands()[program[6:]] if program.startswith("bbuvl ") else bench_options(program[6:-3])
        wrong += [f"{doc.name}:{number}: {program} has no {option}" for option in sorted(given - known)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_bbuvl_command_a_doc_names_is_one(doc):
    """`named_options` passes over a span naming no command it knows, so a misspelt or removed command
    (`bbuvl data tiles`, `bbuvl model merge`) went unchecked: each command or group a span names is one."""
    known = set(commands())
    known |= {" ".join(c.split()[:n]) for c in known for n in range(1, len(c.split()))}
    wrong = []
    for number, span in code_spans(doc.read_text(encoding="utf-8")):
        for m in COMMAND.finditer(span):
            if span[m.end():m.end() + 1] in ("_", "."):  # a file's name (`bbuvl token_map.json`), not a command
                continue
            words = m.group(1).split()
            named = " ".join(words[:next((n for n in range(len(words), 0, -1) if " ".join(words[:n]) in known), 0)])
            if not named or (named not in commands() and len(words) > len(named.split())):
                wrong.append(f"{doc.name}:{number}: {span.strip()}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_bench_command_runs_the_venvs_python(doc):
    """README gave `python bench/inspection.py --checkpoint demo_out/bbu/run/final ...` after `make demo`, which leaves
    the packages in .venv and activates nothing: `python` there stopped at 'No module named torch'. A bench command runs
    `.venv/bin/python`, or names the environment it runs in (`PYTHONPATH=src python`, docs/gpu.md's GPU machine)."""
    wrong = [f"{doc.name}:{number}: {span.strip()}" for number, span in code_spans(doc.read_text(encoding="utf-8"))
             if re.search(r"(?<![\w/.=-])(?<!PYTHONPATH=src )python3? bench/", span)]
    assert not wrong, "\n".join(wrong)


@cache
def required_options() -> dict[str, list[tuple[str, ...]]]:
    """Every `bbuvl` command's words and the spellings of each option it cannot run without."""
    found: dict[str, list[tuple[str, ...]]] = {}

    def walk(command, words: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*words, name])
        else:
            found[" ".join(words)] = [tuple(p.opts) for p in command.params
                                      if p.required and p.param_type_name == "option"]

    walk(typer.main.get_command(app), [])
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_line_that_gives_two_required_options_gives_all(doc):
    """A span that names one required option cites it (`bbuvl predict -c exported/`); one that gives two or more is a
    command line to run, and must run: docs/faults.md gave `bbuvl eval --pred VAL_PRED --gt VAL --choose-thresholds
    ...`, which eval refused, "Missing option '--out'"."""
    wrong = []
    for number, span in code_spans(doc.read_text(encoding="utf-8")):
        if (named := named_options(span)) is None or not named[0].startswith("bbuvl ") or "..." in span:
            continue
        given = named[1] | set(re.findall(r"(?<![\w-])(-[a-zA-Z])\b", span))
        needed = required_options()[named[0][6:]]
        missing = [spellings[0] for spellings in needed if not given & set(spellings)]
        if len(needed) - len(missing) >= 2 and missing:
            wrong.append(f"{doc.name}:{number}: {named[0]} without {', '.join(missing)}: {span.strip()}")
    assert not wrong, "\n".join(wrong)


def test_every_default_docs_serving_gives_is_serves():
    """docs/serving.md's "Options" table gives each `bbuvl serve` option's default (`--max-wait-ms` | `25`): where the
    command has a default of its own, the table's is that one, as a number or as the text."""
    params = {o: p for p in typer.main.get_command(app).commands["serve"].params for o in (*p.opts, *p.secondary_opts)}
    table = (ROOT / "docs" / "serving.md").read_text("utf-8").split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    wrong, compared = [], 0
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`-"):
            continue
        options = [re.findall(r"--[\w-]+", o)[-1] for o in re.findall(r"`([^`]+)`", cells[0])]
        defaults = re.findall(r"`([^`]+)`", cells[1])
        if len(defaults) != len(options):
            continue
        for option, given in zip(options, defaults):
            if option not in params:
                wrong.append(f"{option}: serve has no such option")
                continue
            if (real := params[option].default) is None:
                continue
            compared += 1
            same = float(given) == real if isinstance(real, (int, float)) else given == str(real)
            if not same:
                wrong.append(f"{option}: the table says {given}, serve's default is {real}")
    assert compared >= 10 and not wrong, "\n".join(wrong) or f"only {compared} defaults compared"


def test_every_option_the_readme_names_alone_is_some_commands():
    every = set().union(*commands().values())
    wrong = [f"README.md:{number}: {span}" for number, span in code_spans((ROOT / "README.md").read_text("utf-8"))
             if named_options(span) is None and (m := re.match(r"(--[a-z][\w-]*)", span)) and m.group(1) not in every]
    assert not wrong, "\n".join(wrong)


def sections(doc: Path) -> list[str]:
    """The section titles of a docs page, as citations name them: headings without their number, and bold leads."""
    text = doc.read_text(encoding="utf-8")
    titles = [re.sub(r"^#+\s*(\d+\.\s+)?", "", line).strip() for line in text.splitlines() if line.startswith("#")]
    titles += re.findall(r"^(?:- )?\*\*([^*]+?)\.?\*\*", text, re.M)
    return [t.replace("`", "").lower() for t in titles]


def test_every_docs_section_cited_is_there():
    pages = {p.name: sections(p) for p in (ROOT / "docs").glob("*.md")}
    wrong = []
    for path in CITERS:
        text = path.read_text(encoding="utf-8")
        for m in CITATION.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}"
            if m.group(1) not in pages:
                wrong.append(f"{where}: no docs/{m.group(1)}")
                continue
            for title in re.findall(r"\"([^\"]+)\"", m.group(2)):
                # A citation names a title's start, or its part after a colon ("Close-ups ...: where the faults are lost").
                cited = title.replace("`", "").lower()
                if not any(t.startswith(cited) or f": {cited}" in t for t in pages[m.group(1)]):
                    wrong.append(f"{where}: docs/{m.group(1)} has no section \"{title}\"")
    assert not wrong, "\n".join(wrong)


def anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but hyphens dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_every_docs_anchor_a_link_names_is_a_heading():
    wrong = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"\]\((?:\.\./)?(?:docs/)?([\w.-]+\.md)#([^)\s]+)\)", text):
            page = ROOT / "docs" / m.group(1)
            headings = [re.sub(r"^#+\s*", "", line) for line in page.read_text("utf-8").splitlines()
                        if line.startswith("#")] if page.is_file() else []
            if m.group(2) not in {anchor(h) for h in headings}:
                wrong.append(f"{doc.name}:{text[:m.start()].count(chr(10)) + 1}: no heading #{m.group(2)} in {m.group(1)}")
    assert not wrong, "\n".join(wrong)


def config_keys(model: type | None = None, prefix: str = "") -> set[str]:
    """Every dotted key of the run config (`Config`), sections included."""
    from pydantic import BaseModel

    from bbuvl.config import Config

    keys: set[str] = set()
    for name, field in (model or Config).model_fields.items():
        keys.add(prefix + name)
        kind = field.annotation
        for inner in (kind, *getattr(kind, "__args__", ())):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys |= config_keys(inner, f"{prefix}{name}.")
    return keys


# `bbuvl serve`'s answers hold a `model` object of their own (docs/serving.md, "Options"): these are its fields.
ANSWER_FIELDS = {"model.tiles", "model.fewshot", "model.fewshot.stale"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_config_key_a_doc_names_is_a_key(doc):
    keys = config_keys()
    sections = "|".join(sorted({k.split(".")[0] for k in keys}))
    text = doc.read_text(encoding="utf-8")
    wrong = [f"{doc.name}:{text[:m.start()].count(chr(10)) + 1}: {m.group(1)}"
             for m in re.finditer(rf"`((?:{sections})(?:\.[a-z_0-9]+)+)(?:\.\*)?(?:[:=][^`]*)?`", text)
             if m.group(1) not in keys | ANSWER_FIELDS and not module_path(m.group(1))]
    assert not wrong, "\n".join(wrong)


def module_path(dotted: str) -> bool:
    """Whether a dotted name is a name in a module of the package (`data.families.family_of`), not a config key."""
    parts = dotted.split(".")
    for n in range(2, len(parts)):
        module = (ROOT / "src" / "bbuvl" / Path(*parts[:n])).with_suffix(".py")
        if module.is_file() and re.search(rf"^(def|class) {parts[n]}\b|^{parts[n]} = ", module.read_text("utf-8"), re.M):
            return True
    return False


def imported_packages() -> dict[str, set[str]]:
    """Each top-level package or module of bbuvl and the others it imports anywhere in its files (inside functions
    too, as import-linter counts them)."""
    import ast

    src = ROOT / "src" / "bbuvl"
    own = {p.name.removesuffix(".py") for p in src.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    found: dict[str, set[str]] = {}
    for path in src.rglob("*.py"):
        me = path.relative_to(src).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "bbuvl" and len(parts) > 1 and parts[1] in own - {me, "__init__"}:
                    found.setdefault(me, set()).add(parts[1])
    return found


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_package_import_graph_docs_architecture_draws_is_the_codes():
    """docs/architecture.md's graph "after" named 14 packages' imports and missed 30 edges of theirs (`data -> outputs`,
    `eval -> model`, `serve -> versions` ...) and every edge of `outputs` and `entry`."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    block = text.split("After:\n\n```\n", 1)[1].split("```", 1)[0]
    drawn = {left.strip(): {n.strip() for n in right.split(",")}
             for left, right in (line.split("->") for line in block.splitlines() if line.strip())}
    real = {me: names for me, names in imported_packages().items() if me != "__main__"}
    wrong = [f"{me}: drawn {', '.join(sorted(drawn.get(me, ()))) or 'nothing'}, imports "
             f"{', '.join(sorted(real.get(me, ()))) or 'nothing'}"
             for me in sorted(drawn.keys() | real.keys()) if drawn.get(me) != real.get(me)]
    assert not wrong, "\n".join(wrong)


def test_every_help_text_shows_as_written():
    """`--help` renders each text as Rich markup, which takes `[word ...]` for a style and drops it: `data convert
    --help` said "smart_resize minimum pixel count (--resize) ." where the source gave "[config's, or Qwen's]"."""
    from rich.text import Text

    def walk(command, words: list[str]):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*words, name])
        yield " ".join(words) or "bbuvl", command

    wrong = []
    for name, command in walk(typer.main.get_command(app), []):
        texts = [("", command.help or "")] + [(p.name, getattr(p, "help", None) or "") for p in command.params]
        wrong += [f"{name} {who}: {text!r} shows as {Text.from_markup(text).plain!r}".replace(" : ", ": ")
                  for who, text in texts if Text.from_markup(text).plain != text]
    assert not wrong, "\n".join(wrong)


def test_data_convert_help_names_every_file_it_writes(tmp_path):
    """`data convert --help` said OUT gets "images/, train/val/teachers.jsonl, errors.jsonl"; it writes labels.json and
    summary.json there too, as README's "Dataset folder" lists them."""
    from typer.testing import CliRunner

    runner = CliRunner()
    made = runner.invoke(app, ["data", "synth", str(tmp_path / "export"), "--format", "vendor", "--n-train", "3",
                               "--n-val", "1", "--size", "128x96"])
    assert made.exit_code == 0, made.output
    done = runner.invoke(app, ["data", "convert", str(tmp_path / "export"), str(tmp_path / "ds"), "--workers", "1",
                               "--teachers", "1"])
    assert done.exit_code == 0, done.output
    (out,) = [p for p in typer.main.get_command(app).commands["data"].commands["convert"].params if p.name == "out"]
    written = {p.name for p in (tmp_path / "ds").iterdir() if not p.name.startswith(".")}
    named = set(re.findall(r"[\w.]+", out.help.replace("train/val/teachers", "train.jsonl val.jsonl teachers")))
    assert written - named == set(), out.help
