"""bench/gpu.py: the CPU smoke run at two layers prints every column and writes its JSON; the held architectures
are the published sizes; MFU's FLOP count and peak table; bad options and unknown models are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from gpu_flops import ModelShape, SampleCounts, bf16_peak_tflops, forward_flops  # noqa: E402
from gpu_model import ARCHITECTURES, cut_depth, read_architecture  # noqa: E402

TRAIN_COLUMNS = ("tuning", "head", "layout", "attention", "checkpointing", "step s", "tokens/s", "photos/s", "peak GB",
                 "TFLOP/s", "MFU", "note")
PREDICT_COLUMNS = ("mode", "grammar", "batch", "photos/s", "s/batch", "answer tokens", "objects/photo", "peak GB", "note")
# The smallest run that still goes through every stage: model built from the 3B's architecture at two layers, one
# training row (LoRA, head, packed rows), one generate row under the grammar; `make test-all` runs every row.
SMOKE = ["--config", "configs/base.yaml", "--layers", "2", "--device", "cpu", "--steps", "1", "--warmup", "0",
         "--objects", "1", "--vision-tokens", "64", "--accumulation", "1", "--tuning", "lora", "--head", "on",
         "--layout", "packed", "--checkpointing", "off", "--predict", "generate", "--predict-batch", "1", "--calls", "1",
         "--profile"]


def _bench(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    root = BENCH.parent
    return subprocess.run([sys.executable, str(BENCH / "gpu.py"), *args], capture_output=True, text=True, cwd=root,
                          timeout=timeout, env={**__import__("os").environ, "OMP_NUM_THREADS": "2",
                                                "TMPDIR": str(tmp_path)})


# A minute of the default run's two workers (building and initialising half a billion random parameters is 25 s
# of it, importing 14 s): it runs under -m slow with the other rows, and on any machine that runs bench/gpu.py.
@pytest.mark.slow
def test_cpu_smoke_run_at_two_layers_prints_every_column_and_writes_the_json(tmp_path):
    out = tmp_path / "gpu.json"
    result = _bench([*SMOKE, "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    header = [line for line in result.stdout.splitlines() if "tuning" in line and "MFU" in line]
    assert header, result.stdout
    for column in (*TRAIN_COLUMNS, *PREDICT_COLUMNS):
        assert column in result.stdout, f"column {column!r} missing from\n{result.stdout}"
    report = json.loads(out.read_text())
    assert report["layers"] == 2 and report["peak_bf16_tflops"] is None and report["device"].startswith("CPU")
    # The architecture's width and vocabulary stay whole: two layers of the 3B are still half a billion parameters.
    assert 0.4e9 < report["params"]["total"] < 0.7e9
    [train] = report["training"]
    assert "error" not in train, train
    assert train["attention"] == "bbuvl_packed_sdpa" and train["steps"] == 1
    for key in ("step_s", "tokens_per_s", "photos_per_s", "tflops_per_s", "peak_gb"):
        assert train[key] > 0, (key, train)
    assert train["mfu"] is None  # no bf16 peak for a CPU
    # --profile: one more step, profiled and not timed; the 64-token photo is one window of the vision tower per
    # windowed block, and each LLM layer attends once.
    profile = train["profile"]
    assert profile["sorted_by"] == "self_cpu_time_total" and profile["ops"] and profile["attention_calls"] > 0
    assert "attention calls" in result.stdout
    assert train["trainable_params"] < report["params"]["total"] / 5  # LoRA + head, not the whole model
    [predict] = report["prediction"]
    assert "error" not in predict and predict["errors"] == 0, predict
    # The answer decoded is the dense one asked for: one object, every token of it through the grammar.
    assert predict["objects_per_photo"] == 1.0 and predict["answer_tokens"] > 10 and predict["photos_per_s"] > 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_training_and_prediction_row_runs_at_two_layers(tmp_path):
    out = tmp_path / "gpu.json"
    args = ["--config", "configs/base.yaml", "--layers", "2", "--device", "cpu", "--steps", "1", "--warmup", "0",
            "--objects", "2", "--vision-tokens", "64", "--accumulation", "1", "--predict-batch", "1,2", "--calls", "1"]
    result = _bench([*args, "--out", str(out)], tmp_path, timeout=3500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["training"]) == 16 and len(report["prediction"]) == 8
    for row in report["training"] + report["prediction"]:
        assert "error" not in row and row["photos_per_s"] > 0, row
    assert {r["attention"] for r in report["training"] if r["layout"] == "packed"} == {"bbuvl_packed_sdpa"}
    assert all(r["objects_per_photo"] == 2.0 for r in report["prediction"]), report["prediction"]


@pytest.mark.parametrize("name, billions, vision", [("Qwen2.5-VL-3B-Instruct", 3.75, 0.67),
                                                    ("Qwen3-VL-4B-Instruct", 4.44, 0.41),
                                                    ("Qwen3.5-0.8B", 0.85, 0.10)])
def test_held_architectures_have_the_published_sizes_and_cut_to_two_layers(name, billions, vision):
    arch = read_architecture(ARCHITECTURES / f"{name}.json")

    def params(a: dict) -> tuple[float, float, object]:
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(**a))
        return (sum(p.numel() for p in model.parameters()) / 1e9,
                sum(p.numel() for p in model.model.visual.parameters()) / 1e9, model)

    total, tower, _ = params(arch)
    assert total == pytest.approx(billions, abs=0.01) and tower == pytest.approx(vision, abs=0.01)
    cut = cut_depth(arch, 2)
    _, _, model = params(cut)
    assert len(model.model.language_model.layers) == 2 and len(model.model.visual.blocks) == 2
    text = model.config.get_text_config()
    assert text.hidden_size == arch["text_config"]["hidden_size"] and text.vocab_size == arch["text_config"]["vocab_size"]
    assert "full_attention" in getattr(text, "layer_types", ["full_attention"])


def test_bf16_peaks_name_the_gpu_variant_and_know_no_cpu():
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA H200") == 989.0
    assert bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bf16_peak_tflops("NVIDIA L40S") == 362.0 and bf16_peak_tflops("NVIDIA L4") == 121.0
    assert bf16_peak_tflops("CPU (AMD EPYC)") is None and bf16_peak_tflops("Tesla T4") is None


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_llm_flops_equal_what_torch_counts_for_a_text_forward(tiny, tiny_family):
    model, _ = tiny
    shape = ModelShape.of(model)
    L = 48
    ids = torch.randint(0, 100, (1, L))
    from torch.utils.flop_counter import FlopCounterMode

    # Eager attention: its matmuls are what the counter sees (it has no formula for CPU SDPA's kernel).
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.model.language_model(input_ids=ids, use_cache=False)
    finally:
        model.set_attn_implementation("sdpa")
    counted = counter.get_total_flops()
    ours = forward_flops(shape, SampleCounts(tokens=L, supervised=0, patches=()))
    # torch counts attention's full square; ours its causal half (MFU counts the work a causal kernel must do).
    full_square = 2.0 * L * L * shape.attention_width * shape.full_layers
    # Qwen3.5's Gated DeltaNet runs as a chunked torch kernel that does a few percent more than the recurrence's
    # 4 x key dim x value dim x heads per token, which is what MFU counts.
    tolerance = 0.1 if shape.deltanet_layers else 0.02
    assert ours["llm"] + full_square == pytest.approx(counted, rel=tolerance)
    assert ours["vision"] == 0 and ours["lm_head"] == 0


@pytest.mark.parametrize("args, message", [
    (["--config", "configs/base.yaml", "--tuning", "half"], "--tuning: half is not one of full, lora"),
    (["--config", "configs/base.yaml", "--layers", "0"], "--layers must be at least 1"),
    (["--config", "configs/demo.yaml", "--device", "cpu"], "no architecture held for model.path 'demo_out/tiny-model'"),
    (["--config", "configs/nope.yaml", "--device", "cpu"], "nope.yaml"),
])
def test_bad_options_and_models_without_an_architecture_are_one_line_errors(args, message, capsys):
    import gpu

    try:
        code = gpu.main([*args, "--out", "never-written.json"])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in " ".join(err.split()), err
    assert "Traceback" not in err and not Path("never-written.json").exists()


def test_every_gpu_config_says_whether_its_memory_note_is_estimated_or_measured_as_the_readme_lists():
    root = BENCH.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Memory of the shipped configs", 1)[1].split("\n## ", 1)[0]
    listed = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `configs/") and len(cells) == 4:
            listed[cells[0].strip("`")] = cells[3]
    shipped = {f"configs/{p.name}" for p in (root / "configs").glob("*.yaml") if not p.name.startswith("demo")}
    assert set(listed) == shipped, (listed, shipped)
    for config, status in listed.items():
        assert status in ("estimated", "measured"), (config, status)
        header = (root / config).read_text(encoding="utf-8").split("\nmodel:", 1)[0]
        assert f"# Memory ({status}" in header, f"{config}: its memory note does not say '{status}' as the README does"


def test_vision_flops_equal_what_torch_counts_for_a_photo_of_whole_windows(tiny):
    model, _ = tiny
    shape = ModelShape.of(model)
    visual = model.model.visual
    # 16 x 16 patches: whole 8 x 8 windows in the windowed blocks, so the count is exact.
    grid = torch.tensor([[1, 16, 16]])
    patches = torch.randn(256, visual.patch_embed.proj.weight[0].numel())
    from torch.utils.flop_counter import FlopCounterMode

    model.set_attn_implementation("eager")
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            visual(patches, grid_thw=grid)
    finally:
        model.set_attn_implementation("sdpa")
    ours = forward_flops(shape, SampleCounts(tokens=0, supervised=0, patches=(256,)))
    assert ours["vision"] == pytest.approx(counter.get_total_flops(), rel=0.02)


def test_lora_trains_the_llm_through_frozen_weights_and_leaves_the_vision_tower_forward_only(tiny_model_dir):
    from gpu_flops import training_multipliers

    from bbuvl.config import LoraConfig
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.train.trainer import apply_lora

    model, _ = load_model_and_processor(str(tiny_model_dir))
    assert training_multipliers(model) == {"llm": 3.0, "lm_head": 3.0, "vision": 3.0}
    lora = apply_lora(model, LoraConfig(enabled=True))
    assert training_multipliers(lora.get_base_model()) == {"llm": 2.0, "lm_head": 2.0, "vision": 1.0}
