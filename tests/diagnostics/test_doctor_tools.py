"""Offline tools: memory trend (flat vs leaking), dead units, attention maps, loss landscape (parameters untouched), PNGs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.diagnostics.attention import cross_attention
from bbuvl.diagnostics.features import feature_stats
from bbuvl.diagnostics.landscape import loss_landscape
from bbuvl.diagnostics.memory import inference_memory, measure_memory, memory_trend
from bbuvl.diagnostics.probe import dataset_batches

pytestmark = pytest.mark.filterwarnings("ignore")


def test_memory_trend_tells_a_leak_from_noise():
    noise = [100 + (i % 3) * 0.5 for i in range(50)]
    assert memory_trend(noise, warmup=5).verdict == "flat"
    leak = [100 + 0.5 * i for i in range(50)]  # 0.5 MB per iteration: 22 MB over the 45 fitted iterations
    trend = memory_trend(leak, warmup=5)
    assert trend.verdict == "leaking" and trend.slope_mb_per_iter == pytest.approx(0.5)


def test_a_deliberately_leaking_loop_is_found_and_a_clean_one_is_not():
    freed = [torch.ones(2**18) for _ in range(200)]  # 200 MB the process frees before the loop: the allocator keeps it
    del freed
    kept = []
    leaky = measure_memory(lambda i: kept.append(torch.ones(2**18)), n=40, warmup=4)  # 1 MB kept per iteration
    clean = measure_memory(lambda i: torch.ones(2**18).sum(), n=40, warmup=4)  # 1 MB made and dropped
    assert leaky.verdict == "leaking" and leaky.trends()["rss"].slope_mb_per_iter == pytest.approx(1.0, rel=0.2)
    assert clean.verdict == "flat"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_repeated_head_inference_keeps_memory_flat(predictor, small_dataset):
    image = str(small_dataset / "images" / "val_00000.jpg")
    trace = inference_memory(predictor, [image], n=40, mode="head", warmup=5)
    assert trace.verdict == "flat", trace.trends()


def test_features_count_dead_units_per_layer(predictor, small_dataset):
    batches = dataset_batches(predictor, small_dataset / "val.jsonl", 2, 2).batches
    layer = predictor.model.detection_head.box_head.layers[0]
    healthy = {s.name: s for s in feature_stats(predictor.model, batches)}
    saved = layer.bias.detach().clone()
    with torch.no_grad():
        layer.bias.fill_(-1e4)  # every unit of the first box layer pushed below zero: ReLU never fires
    try:
        killed = {s.name: s for s in feature_stats(predictor.model, batches)}
    finally:
        with torch.no_grad():
            layer.bias.copy_(saved)
    name = "box_head.0 (relu)"
    assert killed[name].dead == killed[name].units == 128 and healthy[name].dead < 128
    assert killed["vision_adapter.bottleneck (gelu)"].dead == healthy["vision_adapter.bottleneck (gelu)"].dead
    assert all(s.samples.numel() > 0 for s in healthy.values())


def test_attention_maps_cover_the_image_grid_and_sum_to_the_image_share(predictor, small_dataset):
    maps = cross_attention(predictor, small_dataset / "images" / "val_00000.jpg", top_k=3)
    w, h = predictor.contract.model_size((224, 168))
    grid = (h // predictor.contract.factor, w // predictor.contract.factor)  # (6, 8) at 28 px, (5, 7) at 32 px
    assert maps.grid == grid and maps.image.size == (w, h) and len(maps.queries) == 3  # the model-frame picture
    scores = [q.score for q in maps.queries]
    assert scores == sorted(scores, reverse=True)
    for q in maps.queries:
        assert q.heat.shape == grid and float(q.heat.sum()) == pytest.approx(q.vision_share, abs=1e-5)
        assert 0 < q.vision_share <= 1 and all(0 <= v <= 1 for v in q.box)


def test_landscape_leaves_every_parameter_bit_identical(predictor, small_dataset):
    model = predictor.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    batches = dataset_batches(predictor, small_dataset / "val.jsonl", 1, 1).batches
    land = loss_landscape(model, batches, steps=3, span=0.5)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert land.losses[1][1] == land.center  # the grid's middle is the checkpoint itself
    assert len({v for row in land.losses for v in row}) > 1  # the directions really moved the head


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_commands_write_pictures_and_name_them_as_typed(trained_checkpoint, small_dataset, tmp_path):
    runner = CliRunner()
    image = small_dataset / "images" / "val_00001.jpg"
    commands = {
        "memory": ["memory", str(trained_checkpoint), "--n", "8", "--images", str(image)],
        "features": ["features", str(trained_checkpoint), "--samples", "2"],
        "attention": ["attention", str(trained_checkpoint), str(image), "--top-k", "2"],
        "landscape": ["landscape", str(trained_checkpoint), str(small_dataset / "val.jsonl"), "--steps", "2", "--samples", "1"],
    }
    for name, args in commands.items():
        out = tmp_path / f"[red]{name} 图.png"  # rich markup in a name is printed, not applied
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 0, (name, result.output)
        assert f"[red]{name} 图.png" in "".join(result.output.split("\n")), (name, result.output)
        with Image.open(out) as png:
            assert png.format == "PNG" and png.width > 400 and png.height > 250, name


def test_doctor_memory_refuses_too_few_iterations_before_loading_anything(tmp_path):
    result = CliRunner().invoke(app, ["memory", str(tmp_path / "no checkpoint"), "--n", "4"])
    assert result.exit_code == 2 and "--n" in result.output and "no checkpoint" not in result.output, result.output


def test_a_checkpoint_named_like_mathtext_is_drawn_in_the_plot_titles(tmp_path):
    from bbuvl.diagnostics.landscape import Landscape
    from bbuvl.diagnostics.memory import MemoryTrace
    from bbuvl.diagnostics.plots import plot_landscape, plot_memory

    what = r"run$\frac$/final"  # a folder name any shell lets a user type
    land = Landscape([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [[1.0, 0.5, 1.0], [0.5, 0.1, 0.5], [1.0, 0.5, 1.0]], ["llm"], 10, 0.1)
    # Before: matplotlib's 'Expected \frac{num}{den}' when the plot was saved, after the whole measurement.
    plot_landscape(land, tmp_path / "l.png", what)
    plot_memory(MemoryTrace({"rss": [100.0, 100.0, 100.0, 100.0]}, warmup=1), tmp_path / "m.png", what)
    assert Image.open(tmp_path / "l.png").format == Image.open(tmp_path / "m.png").format == "PNG"


def test_a_caption_with_control_characters_is_shown_spelled_out(predictor):
    from bbuvl.diagnostics.attention import caption_text

    tok = predictor.tokenizer
    ids = tok.encode("线缆\x1b[2J\r标签", add_special_tokens=False) + [tok.eos_token_id]
    # Before: the ESC and carriage return went to the terminal's table (cleared the screen) and to the plot as tofu.
    assert caption_text(tok, ids, (tok.eos_token_id,)) == "线缆\\x1b[2J\\r标签"


def test_a_checkpoint_or_photo_named_in_bytes_that_are_not_utf8_is_drawn_in_the_plot_titles(tmp_path):
    import os

    from bbuvl.diagnostics.landscape import Landscape
    from bbuvl.diagnostics.memory import MemoryTrace
    from bbuvl.diagnostics.plots import plot_landscape, plot_memory

    what = os.fsdecode("机房/final".encode("gbk"))  # a folder unpacked from a Chinese Windows archive
    land = Landscape([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [[1.0, 0.5, 1.0], [0.5, 0.1, 0.5], [1.0, 0.5, 1.0]], ["llm"], 10, 0.1)
    # Before: "TypeError: set_text(): incompatible function arguments" from matplotlib, after the whole measurement.
    plot_landscape(land, tmp_path / "l.png", what)
    plot_memory(MemoryTrace({"rss": [100.0, 100.0, 100.0, 100.0]}, warmup=1), tmp_path / "m.png", what)
    assert Image.open(tmp_path / "l.png").format == Image.open(tmp_path / "m.png").format == "PNG"
