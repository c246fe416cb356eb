"""Faults are marked in the hierarchy file, read from it (and through the token map), never written in code."""

import json
from pathlib import Path

import pytest

from bbuvl.data.faults import Faults
from bbuvl.data.labels import DEFAULT_HIERARCHY, DEFAULT_TOKEN_MAP, Hierarchy


def marked_in_file(path) -> set[str]:
    """The labels a hierarchy file marks `"fault": true`, read from the JSON itself."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    out = set()
    for cat, spec in raw["categories"].items():
        for attr, aspec in spec.get("attributes", {}).items():
            if aspec.get("fault"):
                out.add(f"{cat}/{attr}")
            out |= {f"{cat}/{attr}/{s}" for s, v in aspec.get("states", {}).items() if isinstance(v, dict) and v.get("fault")}
    return out


def test_the_shipped_faults_are_exactly_what_the_hierarchy_file_marks():
    faults = Faults.load()
    assert faults.labels == marked_in_file(DEFAULT_HIERARCHY)
    assert faults and all(Hierarchy.load().is_valid(label) for label in faults.labels)


def test_each_fault_splits_into_its_kind_and_state_with_the_kinds_other_states():
    faults = Faults.load()
    h = Hierarchy.load()
    for label in faults.labels:
        kind, state = faults.kind_state(label)
        assert f"{kind}/{state}" == label and state in faults.kinds[kind].faults
        siblings = [x for x in h.labels() if x.rsplit("/", 1)[0] == kind]
        assert [faults.kinds[kind].label(s) for s in faults.kinds[kind].states] == siblings
        assert len(siblings) > 1  # a judged kind has a state that is not a fault
        ok = next(s for s in faults.kinds[kind].states if s not in faults.kinds[kind].faults)
        assert not faults.is_fault(faults.kinds[kind].label(ok))


def test_a_platform_spelling_of_a_fault_is_a_fault_through_the_token_map():
    faults = Faults.load()
    tokens = json.loads(DEFAULT_TOKEN_MAP.read_text(encoding="utf-8"))["tokens"]
    platform = {}
    for token, canonical in tokens.items():
        platform.setdefault(canonical, token)
    spelt = 0
    for label in faults.labels:
        parts = label.split("/")
        as_platform = "/".join(platform.get(p, p) for p in parts)
        if as_platform != label:
            spelt += 1
            assert faults.is_fault(as_platform), as_platform
            assert faults.canonical(as_platform) == label
    assert spelt  # the shipped token map spells at least one fault another way
    assert not faults.is_fault("no such part/at all")


def test_a_user_hierarchy_adds_a_fault_with_no_code_change(tmp_path):
    path = tmp_path / "hierarchy.json"
    path.write_text(json.dumps({"categories": {"电源模块": {"attributes": {
        "指示灯": {"states": {"正常": "normal", "告警": {"gloss": "alarm", "fault": True}}},
        "盖板缺失": {"fault": True}, "盖板完好": {}}}}}, ensure_ascii=False), encoding="utf-8")
    faults = Faults.load(path)
    assert faults.labels == {"电源模块/指示灯/告警", "电源模块/盖板缺失"}
    assert faults.kinds["电源模块/指示灯"].states == ("正常", "告警")
    assert faults.kinds["电源模块"].states == ("盖板缺失", "盖板完好")  # the complete labels one level down
    assert faults.kind_state("电源模块/盖板完好") == ("电源模块", "盖板完好") and not faults.is_fault("电源模块/盖板完好")
    assert Hierarchy.load(path).english("电源模块/指示灯/告警").endswith("/alarm")  # a marked state keeps its gloss


@pytest.mark.parametrize("spec,needle", [
    ({"门": {"fault": True, "attributes": {}}}, "category '门' is marked"),
    ({"门": {"attributes": {"锁": {"fault": True, "states": {"开": "open"}}}}}, "has states and is marked"),
    ({"门": {"attributes": {"锁": {"states": {"开": 3}}}}}, "must be a gloss or an object"),
])
def test_a_misplaced_fault_mark_is_an_error_naming_the_file(tmp_path, spec, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"categories": spec}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=needle) as e:
        Hierarchy.load(path)
    assert str(path) in str(e.value)


def test_no_fault_label_is_written_in_the_products_code():
    """Only the hierarchy file names faults: no module, page or script of the product spells a fault state.

    The synthetic scenes (synthetic/) are the exception that proves it: they draw parts wrong, so they name what they
    drew; the test below holds them to the file."""
    import bbuvl

    root = DEFAULT_HIERARCHY.parents[1]
    assert root == Path(bbuvl.__file__).parent
    states = {label.rsplit("/", 1)[1] for label in Faults.load().labels}
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix not in {".py", ".js", ".html", ".css", ".yaml"} or rel.parts[0] in ("resources", "synthetic"):
            continue
        text = path.read_text(encoding="utf-8")
        found += [f"{rel}: {s}" for s in states if s in text]
    assert not found


def test_the_synthetic_scenes_draw_exactly_the_faults_the_hierarchy_marks():
    from bbuvl.synthetic.scene import FAULT_LABELS

    assert FAULT_LABELS == Faults.load().labels
