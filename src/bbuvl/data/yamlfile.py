"""Reading YAML that a user wrote, safely and boundedly, with errors that name the file and the line.

`yaml.safe_load` alone accepts an alias bomb (exponential expansion), a self-referencing anchor (a
RecursionError) and duplicate keys (the last silently wins). `load_yaml` refuses each with one line naming where,
and returns the line of every key so that a later validation error can point at it (config.py does).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml


class YamlError(ValueError):
    """YAML that cannot be read: invalid, too deep, too large once aliases expand, or with a repeated key."""


# A config is a few hundred nodes, at most five levels deep. These bounds turn an anchor bomb (aliases that
# expand exponentially) or a self-referencing anchor into one clear error instead of exhausted memory or a
# RecursionError; YAML's own composer recurses per level, so depth is checked on the event stream first.
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 20_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH (the parser is iterative; the composer after it is not), and more than
    MAX_YAML_NODES values as written: the composer builds every node before they are counted, about 20 s a megabyte."""
    depth = values = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            values += 1
            if values > MAX_YAML_NODES:
                raise YamlError(f"{source}:{event.start_mark.line + 1}: more than {MAX_YAML_NODES:,} values; a config "
                                "is a few hundred")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YamlError(f"{source}:{event.start_mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep; "
                                  "a config is a few sections of keys")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


class KeyLines(dict):
    """Each key path's 1-based line; `plain`: the text of each value written without quotes, as typed (`no`,
    `2024-01-01`), which YAML reads as another type (false, a date) than the text a key may expect."""

    def __init__(self) -> None:
        super().__init__()
        self.plain: dict[tuple[str, ...], str] = {}


def _index_nodes(root: yaml.Node, source: str) -> KeyLines:
    """Map each key path to its 1-based line, checking the node graph as it expands (aliases included).

    Raises YamlError for a duplicate key, a self-referencing anchor, or more than MAX_YAML_NODES nodes
    once aliases are expanded.
    """
    index = KeyLines()
    seen = 0
    # `at`: the line of the alias (or `<<: *alias`) the node was reached through. An alias's node is its anchor's,
    # which is elsewhere in the file: a key it brings where it does not belong was named at the anchor's line, a key
    # valid there, not at the line that puts it in the wrong section.
    stack: list[tuple[yaml.Node, tuple[str, ...], frozenset[int], int | None]] = [(root, (), frozenset(), None)]
    while stack:  # iterative: a deep or cyclic graph must not hit Python's recursion limit
        node, prefix, path, at = stack.pop()
        seen += 1
        if seen > MAX_YAML_NODES:
            raise YamlError(f"{source}: more than {MAX_YAML_NODES:,} values once anchors and aliases are expanded "
                              "(an alias bomb?); write the values out or use fewer aliases")
        if id(node) in path:
            raise YamlError(f"{source}:{node.start_mark.line + 1}: an anchor refers to itself (a cycle of aliases)")
        inner = path | {id(node)}
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            # Children are visited in the order written (pushed reversed): an anchor comes before its aliases, so a key
            # is named by its anchor's path, and of `<<: [*a, *b]` the text kept is a's, the value YAML keeps.
            children: list[tuple[yaml.Node, tuple[str, ...], frozenset[int], int | None]] = []
            for k, v in node.value:
                line = at or k.start_mark.line + 1
                through = at or (line if v.start_mark.index < k.start_mark.index else None)  # an alias: before its key
                if k.tag == _MERGE_TAG:
                    children.append((v, prefix, inner, through))
                    continue
                name = str(k.value)
                if name in first:  # both in this mapping as written, wherever an alias brings it
                    dotted = ".".join(prefix + (name,))
                    raise YamlError(f"{source}:{k.start_mark.line + 1}: duplicate key '{dotted}' (first at line "
                                    f"{first[name]}); YAML would silently keep only the last one: remove one")
                first[name] = k.start_mark.line + 1
                index.setdefault(prefix + (name,), line)
                if isinstance(v, yaml.ScalarNode) and v.style is None:
                    index.plain.setdefault(prefix + (name,), v.value)
                children.append((v, prefix + (name,), inner, through))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, prefix, inner, at or (node.start_mark.line + 1 if v.start_mark.index < node.start_mark.index
                                                   else None)) for v in reversed(node.value))
        elif node.tag == _INT_TAG and (digits := sum(c.isdigit() for c in node.value)) > sys.get_int_max_str_digits() > 0:
            # Python reads no longer integer from text: YAML's constructor raised its ValueError, a traceback
            raise YamlError(f"{source}:{node.start_mark.line + 1}: a number of {digits:,} digits, more than Python reads "
                            f"({sys.get_int_max_str_digits():,}) and than any value of a config holds")
    return index


def load_yaml(text: str, source: str) -> tuple[Any, KeyLines]:
    """Parse YAML safely and boundedly: `(data, key path -> line)`; raises YamlError naming file:line."""
    try:
        _check_depth(text, source)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            lines = _index_nodes(root, source) if root is not None else KeyLines()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise YamlError(_described(e, source)) from None
    return data, lines


def _described(e: yaml.YAMLError, source: str) -> str:
    """PyYAML's error as one line at the line to fix, in words a user acts on: its own message named the end of the
    file for a quote never closed, called a second document 'but found another document' and a tab 'a character that
    cannot start any token'."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None) or str(e)
    context, opened = getattr(e, "context", None), getattr(e, "context_mark", None)
    if mark is None:
        return f"{source}: invalid YAML: {problem}"
    where = f"{source}:{mark.line + 1}"
    if context == "expected a single document in the stream":
        return (f"{where}: a second YAML document starts here ('---'); a config is one document: remove the '---' "
                "line, or what follows it")
    if problem.startswith("found character '\\t'"):
        return (f"{where}: a tab at column {mark.column + 1}, where YAML takes only spaces (to indent, or after a "
                "colon): replace it with spaces")
    if problem.startswith(("found unknown escape character", "expected escape sequence")):
        return (f"{where}: invalid YAML: {problem}; inside double quotes a backslash starts an escape: write a Windows "
                "path in single quotes or with forward slashes")
    if opened is not None and opened.line < mark.line and context.startswith(("while scanning", "while parsing a flow")):
        # a quote or bracket never closed: the line to fix is where it opens, not where the file ends
        return f"{source}:{opened.line + 1}: invalid YAML: {context} that starts here: {problem} at line {mark.line + 1}"
    return f"{where}: invalid YAML: {problem}"
