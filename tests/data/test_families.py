"""The family registry and the coordinate contract per family: each family's answer convention, one stored frame."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import FAMILIES, family_of, get_family

sizes = st.tuples(st.integers(32, 4000), st.integers(32, 4000)).filter(lambda s: max(s) / min(s) <= 50)


@st.composite
def stored_box(draw):
    w, h = draw(sizes)
    x1, x2 = sorted(draw(st.floats(0, w)) for _ in range(2))
    y1, y2 = sorted(draw(st.floats(0, h)) for _ in range(2))
    return (w, h), [x1, y1, x2, y2]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=150, deadline=None)
@given(case=stored_box())
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_round_trip_loses_at_most_one_unit_of_the_family_grid(family, case):
    size, box = case
    contract = CoordinateContract(3136, 1003520, max_vision_tokens=1280, family=family)
    answer = contract.to_model(box, size)
    extent = contract.answer_extent(size)
    assert all(isinstance(v, int) for v in answer)
    assert 0 <= answer[0] < answer[2] <= extent[0] and 0 <= answer[1] < answer[3] <= extent[1]
    back = contract.to_stored(answer, size)
    # One unit of the answer grid, in stored pixels: a model-frame pixel, or a thousandth of the side. Half a unit
    # of rounding, or one where a side under a unit is written one unit wide.
    unit = (size[0] / extent[0], size[1] / extent[1])
    for k in range(4):
        lo, hi = box[k % 2], box[k % 2 + 2]
        widened = round(lo / unit[k % 2]) == round(hi / unit[k % 2])
        assert abs(back[k] - box[k]) <= (1.0 if widened else 0.5) * unit[k % 2] + 1e-6
    assert 0 <= back[0] <= back[2] <= size[0] and 0 <= back[1] <= back[3] <= size[1]


def test_each_family_writes_its_own_convention():
    size, box = (1000, 500), [100.0, 50.0, 300.0, 250.0]
    qwen25 = CoordinateContract(3136, 1003520, family="qwen2_5_vl")
    qwen3 = CoordinateContract(3136, 1003520, family="qwen3_vl")
    assert qwen25.factor == 28 and qwen3.factor == 32
    assert qwen25.model_size(size) == (1008, 504)  # multiples of 28: absolute pixels of that frame
    assert qwen25.to_model(box, size) == [101, 50, 302, 252]
    assert qwen3.model_size(size) == (992, 512)  # multiples of 32, but answers are relative to the sides
    assert qwen3.to_model(box, size) == [100, 100, 300, 500]
    assert qwen3.to_stored([100, 100, 300, 500], size) == box
    assert qwen3.answer_extent((37, 4000)) == (1000, 1000)


def test_a_saved_contract_names_its_family_and_an_old_one_is_qwen2_5_vl(tmp_path):
    CoordinateContract(3136, 50176, max_vision_tokens=64, family="qwen3_5").save(tmp_path)
    saved = json.loads((tmp_path / "coordinate_contract.json").read_text())
    assert saved == {"min_pixels": 3136, "max_pixels": 50176, "factor": 32, "max_vision_tokens": 64,
                     "family": "qwen3_5", "box_format": "relative"}
    assert CoordinateContract.load(tmp_path).box_scale == 1000
    (tmp_path / "coordinate_contract.json").write_text('{"min_pixels": 3136, "max_pixels": 50176, "factor": 28}')
    old = CoordinateContract.load(tmp_path)
    assert (old.family, old.box_format, old.box_scale) == ("qwen2_5_vl", "absolute", None)


def test_a_contract_that_contradicts_its_family_is_refused(tmp_path):
    (tmp_path / "coordinate_contract.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 50176, "factor": 28,
                                                                   "family": "qwen3_vl"}))
    with pytest.raises(ValueError, match="coordinate_contract.json.*multiples of 32"):
        CoordinateContract.load(tmp_path)
    (tmp_path / "coordinate_contract.json").write_text('{"min_pixels": 3136,\n "max_pixels": }')
    with pytest.raises(ValueError, match="line 2"):
        CoordinateContract.load(tmp_path)


def test_the_family_comes_from_config_json_never_the_folder_name(tmp_path):
    folder = tmp_path / "qwen3-vl-finetuned"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    assert family_of(folder).name == "Qwen2.5-VL"
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="'llava' is not .*qwen2_5_vl.*qwen3_vl.*qwen3_5"):
        family_of(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        family_of(tmp_path / "empty")
    with pytest.raises(ValueError, match="set model.family"):
        family_of("Qwen/not-in-the-cache")  # HF_HUB_OFFLINE is set for tests: the cache alone answers
    assert get_family("qwen3_5").packs_isolated is False and get_family("qwen3_vl").packs_isolated


@pytest.mark.parametrize("switch", [None, ("HF_HUB_OFFLINE", "ON"), ("TRANSFORMERS_OFFLINE", "1")])
def test_a_hub_id_is_never_looked_up_when_offline_is_asked_or_the_user_switched_the_hub_off(monkeypatch, switch):
    """`offline=True` (data checks before a download) or either offline variable as the hub reads it: the cache alone
    answers, no host name is resolved, and the error says the hub was not asked."""
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if switch:
        monkeypatch.setenv(*switch)
    asked = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: asked.append(host) or (_ for _ in ()).throw(OSError(host)))
    with pytest.raises(ValueError, match="not a local folder.*the hub was not asked"):
        family_of("org/not-in-the-cache", offline=switch is None)
    assert asked == []


def test_an_unsupported_model_type_names_the_config_it_was_read_from(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"config.json: model_type 'llama' is not a model family bbu-vl supports"):
        family_of(tmp_path)


def test_a_lora_checkpoint_where_a_model_belongs_is_named_as_one(tmp_path):
    from bbuvl.data.families import model_type_of

    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        model_type_of(tmp_path)
    assert str(e.value) == (f"{tmp_path}: a LoRA checkpoint (adapter_config.json, no config.json): it holds adapters, "
                            "not a model; use its base model here, or merge the adapters into one first (bbuvl model "
                            "merge-lora)")
