"""The caption refit: only the head's caption layers change, they fit the frozen model's covered objects, and the
run's history says what it did."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bbuvl.config import CaptionRefitConfig
from bbuvl.encode.collate import PaddedCollator
from bbuvl.train.caption_refit import (
    CAPTION_MODULES,
    PIXEL_MODULES,
    Pairs,
    Photo,
    _concat,
    draw_weights,
    caption_queries,
    covered_pairs,
    refit_captions,
    refit_modules,
    training_photos,
)
from bbuvl.train.trainer import build_run, train

REFIT = ["detection.caption_refit.steps=30", "detection.caption_refit.min_iou=0.01", "detection.caption_refit.batch_size=16"]


def _weights(final: Path) -> dict[str, torch.Tensor]:
    return {**{f"vlm.{k}": v for k, v in load_file(final / "model.safetensors").items()},
            **{f"head.{k}": v for k, v in load_file(final / "detection_head.safetensors").items()}}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_with_a_refit_differs_from_one_without_in_the_caption_layers_alone(run_config, tmp_path):
    plain = train(run_config(f"training.output_dir={tmp_path / 'plain'}"), progress=False)
    refit = train(run_config(f"training.output_dir={tmp_path / 'refit'}", *REFIT), progress=False)
    a, b = _weights(Path(plain["final"])), _weights(Path(refit["final"]))
    assert a.keys() == b.keys()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed, "the refit changed nothing"
    assert all(k.split(".")[1] in CAPTION_MODULES for k in changed), sorted(changed)
    assert any(k.split(".")[1] == "caption_decoder" for k in changed)
    [entry] = [h for h in refit["history"] if "caption_refit_pairs" in h]
    assert entry["caption_refit_pairs"] > 0 and entry["step"] == 4
    assert entry["caption_refit_loss_last"] < entry["caption_refit_loss_first"]
    saved = json.loads((tmp_path / "refit" / "history.json").read_text(encoding="utf-8"))
    assert any("caption_refit_pairs" in h for h in saved)
    assert not any("caption_refit_pairs" in h for h in plain["history"])


PIXELS = {"captions": [], "captions and pixels": ["detection.pixel_points=4"],
          "captions, pixels and their context": ["detection.pixel_points=4", "detection.pixel_context=3",
                                                 "detection.caption_refit.steps=1"]}


@pytest.fixture(params=list(PIXELS))
def built(run_config, tmp_path, request):
    """A built (untrained) run and the refit's inputs for its training photos; with pixel levels, or without."""
    pixels = PIXELS[request.param]
    run = build_run(run_config(f"training.output_dir={tmp_path / 'run'}", *pixels))
    collator = PaddedCollator(run.collator.pad_token_id, run.collator.image_token_id, padding_side="right")
    return run, collator, training_photos(run.train_dataset)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_refit_fits_the_covered_objects_and_leaves_every_flag_as_it_was(built):
    run, collator, photos = built
    model, head = run.model, run.model.detection_head
    model.train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before_weights = {n: p.detach().clone() for n, p in head.named_parameters()}
    pairs = covered_pairs(model, run.train_dataset.encoder, collator, run.contract, photos, 0.01)
    labels, uncovered = pairs.labels, pairs.uncovered
    assert len(labels) == pairs.vectors.shape[0] > 0 and pairs.vectors.shape[1] == head.d_model
    assert len(labels) + uncovered == sum(len(p.labels) for p in photos)
    if head.pixel_roi is None:
        assert pairs.pixels is None
    else:  # 4 x 4 points of 3 channels read for every pair, inside its box and (with the context) around it
        levels = 2 if head.pixel_context_roi is not None else 1
        assert pairs.pixels.shape == (len(labels), levels * 3 * 4 * 4) == (len(labels), head.pixel_width)
        assert pairs.pixels.abs().sum() > 0
    tok = run.train_dataset.encoder.tokenizer

    def loss() -> float:
        targets = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(tok.encode(x, add_special_tokens=False) + [head.eos_token_id]) for x in labels],
            batch_first=True, padding_value=-100)
        with torch.no_grad():
            logits = head.caption_logits(caption_queries(head, pairs), targets)
        return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100))

    before = loss()
    result = refit_captions(model, run.train_dataset.encoder, collator, run.contract, photos,
                            CaptionRefitConfig(steps=120, min_iou=0.01, batch_size=16), seed=0)
    assert result.pairs == len(labels) and result.uncovered == uncovered
    assert loss() < 0.5 * before, (before, loss())
    assert model.training and {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(getattr(head, name) is not None for name in CAPTION_MODULES)
    changed = {n.split(".")[0] for n, p in head.named_parameters() if not torch.equal(p, before_weights[n])}
    assert changed == set(refit_modules(head)), changed
    assert ("pixel_roi" in changed) == (head.pixel_roi is not None)
    assert ("pixel_context_roi" in changed) == (head.pixel_context_roi is not None)
    assert set(PIXEL_MODULES) >= changed - set(CAPTION_MODULES)


def test_a_refit_with_no_covered_object_is_refused_by_name(built):
    run, collator, photos = built
    no_boxes = [Photo(p.path, p.size, [[0.0, 0.0, 1.0, 1.0]] * len(p.labels), p.labels) for p in photos]
    with pytest.raises(ValueError, match=r"detection.caption_refit: no training object is covered"):
        refit_captions(run.model, run.train_dataset.encoder, collator, run.contract, no_boxes,
                       CaptionRefitConfig(steps=5, min_iou=0.9), seed=0)



@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refit_with_dropout_fits_the_same_whatever_the_random_state_training_left(run_config, tmp_path):
    # A run killed during its refit and resumed reaches the refit with another global random state (HF restores it
    # only when steps are left): the refit's dropout must not depend on it, nor change it.
    run = build_run(run_config(f"training.output_dir={tmp_path / 'run'}", "detection.dropout=0.3"))
    collator = PaddedCollator(run.collator.pad_token_id, run.collator.image_token_id, padding_side="right")
    photos = training_photos(run.train_dataset)
    fitted = []
    for state in (1, 2):
        model = copy.deepcopy(run.model)
        torch.manual_seed(state)
        before = torch.get_rng_state()
        refit_captions(model, run.train_dataset.encoder, collator, run.contract, photos,
                       CaptionRefitConfig(steps=5, min_iou=0.01, batch_size=8), seed=0)
        assert torch.equal(torch.get_rng_state(), before)
        fitted.append({n: p.detach().clone() for n, p in model.detection_head.named_parameters()})
    assert all(torch.equal(fitted[0][n], fitted[1][n]) for n in fitted[0])


def test_a_balanced_refit_draws_every_label_alike_and_an_unbalanced_one_every_object_alike():
    labels = ["seated", "seated", "seated", "loose"]
    assert draw_weights(labels, 0.0) is None
    w = draw_weights(labels, 1.0)
    assert w[:3].sum().item() == pytest.approx(w[3].item())  # three seated screws weigh what one loose screw does
    half = draw_weights(labels, 0.5)
    assert half[3].item() / half[0].item() == pytest.approx(3 ** 0.5)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_cosine_refit_starts_at_the_constant_ones_rate_and_ends_elsewhere(run_config, tmp_path):
    run = build_run(run_config(f"training.output_dir={tmp_path / 'run'}"))
    collator = PaddedCollator(run.collator.pad_token_id, run.collator.image_token_id, padding_side="right")
    photos, head = training_photos(run.train_dataset), run.model.detection_head
    start = {n: p.detach().clone() for n, p in head.named_parameters()}

    def refit(steps: int, schedule: str) -> tuple[dict[str, torch.Tensor], float]:
        with torch.no_grad():
            for n, p in head.named_parameters():
                p.copy_(start[n])
        result = refit_captions(run.model, run.train_dataset.encoder, collator, run.contract, photos,
                                CaptionRefitConfig(steps=steps, min_iou=0.01, batch_size=16, schedule=schedule), seed=0)
        return {n: p.detach().clone() for n, p in head.named_parameters()}, result.last_loss

    one_constant, first_loss = refit(1, "constant")
    one_cosine, _ = refit(1, "cosine")
    assert all(torch.equal(one_constant[n], one_cosine[n]) for n in start)  # the first step at the full rate
    constant, constant_loss = refit(60, "constant")
    cosine, cosine_loss = refit(60, "cosine")
    assert any(not torch.equal(constant[n], cosine[n]) for n in start)  # later steps at a lower one
    assert cosine_loss < 0.75 * first_loss and constant_loss < 0.75 * first_loss  # both fit


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refit_with_background_teaches_the_queries_that_cover_nothing_the_empty_caption(built):
    run, collator, photos = built
    model, head = run.model, run.model.detection_head
    with torch.no_grad():  # an untrained head reports no query; make every one a box prediction would report
        head.objectness_head.bias.fill_(5.0)
    pairs = covered_pairs(model, run.train_dataset.encoder, collator, run.contract, photos, 0.01, background=True)
    nothing = pairs.nothing
    assert nothing is not None and len(nothing.labels) == nothing.vectors.shape[0] > 0 and set(nothing.labels) == {""}
    assert (nothing.pixels is None) == (head.pixel_roi is None)
    plain = covered_pairs(model, run.train_dataset.encoder, collator, run.contract, photos, 0.01)
    assert plain.nothing is None
    assert torch.equal(plain.vectors, pairs.vectors) and plain.labels == pairs.labels  # the objects' pairs unchanged

    def p_empty() -> float:
        return float(head.caption_logprobs(caption_queries(head, nothing), [()]).exp().mean())

    before = p_empty()
    # 120 steps: at 60 the tiny Qwen3.5 reached 0.14-0.21 over refit seeds 0-2 (from 0.0003), under the bar it has
    # never met; at 120 every family and variant holds 0.50-0.83 over those seeds, at one and two threads.
    refit_captions(model, run.train_dataset.encoder, collator, run.contract, photos,
                   CaptionRefitConfig(steps=120, min_iou=0.01, batch_size=16, background=0.5), seed=0)
    assert p_empty() > max(0.25, 100 * before), (before, p_empty())


def test_background_is_a_share_of_a_batch_below_one():
    with pytest.raises(ValueError):
        CaptionRefitConfig(steps=1, background=1.0)
    with pytest.raises(ValueError):
        CaptionRefitConfig(steps=1, background=-0.1)


def test_the_processes_pairs_are_joined_in_order_with_their_queries_that_cover_nothing():
    def pairs(k: float, n: int, m: int) -> Pairs:
        nothing = Pairs(torch.full((m, 2), -k), torch.full((m, 3), -k), [""] * m, 0)
        return Pairs(torch.full((n, 2), k), torch.full((n, 3), k), [f"{k:g}"] * n, n, nothing)

    joined = _concat([pairs(1.0, 2, 1), pairs(2.0, 1, 3)])
    assert joined.labels == ["1", "1", "2"] and joined.uncovered == 3
    assert joined.vectors[:, 0].tolist() == [1.0, 1.0, 2.0] and joined.pixels.shape == (3, 3)
    assert joined.nothing.vectors[:, 0].tolist() == [-1.0, -2.0, -2.0, -2.0] and joined.nothing.labels == [""] * 4
    assert _concat([Pairs(torch.zeros(1, 2), None, ["a"], 0)]).nothing is None


def test_training_leaves_the_pixel_context_to_the_refit(run_config, tmp_path):
    from bbuvl.train.param_groups import assign_groups

    run = build_run(run_config(f"training.output_dir={tmp_path / 'run'}", *PIXELS["captions, pixels and their context"]))
    trained = {name for named in assign_groups(run.model).values() for name, _ in named}
    assert any(".pixel_roi." in name for name in trained)
    assert not any(".pixel_context_roi." in name for name in trained)  # no optimizer moves it; refit_modules lists it
    assert "pixel_context_roi" in refit_modules(run.model.detection_head)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_with_the_pixel_context_starts_bit_for_bit_as_one_without(run_config, tmp_path):
    plain = build_run(run_config(f"training.output_dir={tmp_path / 'a'}", "detection.pixel_points=4",
                                 "detection.caption_refit.steps=1")).model.state_dict()
    context = build_run(run_config(f"training.output_dir={tmp_path / 'b'}",
                                   *PIXELS["captions, pixels and their context"])).model.state_dict()
    assert {k.split(".")[1] for k in context.keys() - plain.keys()} == {"pixel_context_roi"}
    assert all(torch.equal(plain[k], context[k]) for k in plain)  # its level is drawn apart from the run's stream


def _tiles(small_dataset: Path, out: Path) -> Path:
    """The small dataset's training photos cut into 2x2 tiles, tiles alone: what a user hands the refit."""
    from bbuvl.data.tiling import TileSpec, tile_dataset

    tile_dataset(small_dataset / "train.jsonl", out, TileSpec(grid=(2, 2), overlap=0.15, zoom=1.0, whole=False),
                 num_teachers=0)
    return out / "train.jsonl"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_refits_on_its_refit_photos_after_the_training_photos(run_config, small_dataset, tmp_path):
    tiles = _tiles(small_dataset, tmp_path / "tiles")
    run = build_run(run_config(f"training.output_dir={tmp_path / 'run'}", *REFIT,
                               f"detection.caption_refit.photos={tiles}"))
    n_tiles = sum(1 for line in tiles.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(run.refit_photos) == n_tiles > 0
    assert all(Path(p.path).is_file() and len(p.boxes) == len(p.labels) for p in run.refit_photos)
    collator = PaddedCollator(run.collator.pad_token_id, run.collator.image_token_id, padding_side="right")
    cfg = CaptionRefitConfig(steps=1, min_iou=0.01, batch_size=16)
    own = training_photos(run.train_dataset)
    alone = refit_captions(run.model, run.train_dataset.encoder, collator, run.contract, own, cfg, seed=0)
    both = refit_captions(run.model, run.train_dataset.encoder, collator, run.contract, own + run.refit_photos, cfg, 0)
    tile_objects = sum(len(p.boxes) for p in run.refit_photos)
    assert alone.pairs + alone.uncovered + tile_objects == both.pairs + both.uncovered
    assert both.pairs > alone.pairs
    # Never trained on: the training samples are the training file's alone.
    assert len(run.train_dataset) == len(training_photos(run.train_dataset)) == 8
    assert not build_run(run_config(f"training.output_dir={tmp_path / 'plain'}", *REFIT)).refit_photos


def test_bad_refit_photos_are_refused_naming_the_file_and_line_before_the_run_starts(run_config, small_dataset,
                                                                                     tmp_path):
    lines = (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n", encoding="utf-8")
    # The photos resolve next to the file they are listed in, so the copy sits beside the originals' folder name.
    (tmp_path / "images").symlink_to(small_dataset / "images")
    with pytest.raises(Exception, match=f"{broken}:2"):
        build_run(run_config(f"training.output_dir={tmp_path / 'run'}", *REFIT, f"detection.caption_refit.photos={broken}"))
    assert not (tmp_path / "run").exists()
    record = json.loads(lines[0])
    record["objects"][0]["desc"] = "机柜空间/未见过的状态"
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="training data does not hold"):
        build_run(run_config(f"training.output_dir={tmp_path / 'run'}", *REFIT, f"detection.caption_refit.photos={unknown}"))
    with pytest.raises(ValueError, match=r"detection.caption_refit.photos .*nowhere.jsonl: no such file"):
        build_run(run_config(f"training.output_dir={tmp_path / 'run'}", *REFIT,
                             f"detection.caption_refit.photos={tmp_path / 'nowhere.jsonl'}"))


def test_refit_photos_that_are_validation_photos_are_refused(run_config, small_dataset, tmp_path):
    from bbuvl.train.held_out import HeldOutError, check_held_out

    val = small_dataset / "val.jsonl"
    with pytest.raises(HeldOutError, match="detection.caption_refit.photos"):
        check_held_out(run_config(*REFIT, f"detection.caption_refit.photos={val}"))
    mixed = small_dataset / "refit_with_a_val_photo.jsonl"
    mixed.write_text((small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n"
                     + val.read_text(encoding="utf-8").splitlines()[1] + "\n", encoding="utf-8")
    try:
        with pytest.raises(HeldOutError, match=f"{mixed}:2: refit photo"):
            check_held_out(run_config(*REFIT, f"detection.caption_refit.photos={mixed}"))
        check_held_out(run_config(f"detection.caption_refit.photos={mixed}"))  # no refit: nothing shown
    finally:
        mixed.unlink()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_whose_refit_finds_nothing_covered_names_the_checkpoint_that_holds_it_and_the_ways_on(run_config, tmp_path):
    # Before: "no training object is covered ... the head has not learned to find them yet" alone, with no final/, and a
    # resume (the refit's settings are the run's own) met the same head and stopped the same way
    cfg = run_config("training.max_steps=1", "data.teachers=null", "data.teacher_ratio=0",
                     "detection.caption_refit.steps=5", "detection.caption_refit.min_iou=0.999")
    with pytest.raises(ValueError) as e:
        train(cfg, progress=False)
    saved = Path(cfg.training.output_dir) / "checkpoint-1"
    assert f"Training itself ended at step 1, and {saved} holds the trained model: --resume with a higher " \
           "training.max_steps trains the head on" in str(e.value)
    assert saved.is_dir() and not (saved.parent / "final").exists()


def test_a_refit_over_training_photos_without_any_object_is_refused_before_training(run_config, small_dataset, tmp_path):
    # Before: the run trained to its end, then stopped there, "no training object is covered (0 objects)"
    from bbuvl.data.schema import read_records, write_dataset
    from bbuvl.train.run_inputs import read_run_inputs

    empty = tmp_path / "empty.jsonl"
    write_dataset(empty, [r.model_copy(update={"objects": [], "images": [str(small_dataset / r.image)]})
                          for r in read_records(small_dataset / "train.jsonl")])
    with pytest.raises(ValueError, match=rf"detection.caption_refit.steps 5 refits the captions on the training objects, "
                                         rf"and no photo of data.train {empty} holds one"):
        read_run_inputs(run_config(f"data.train={empty}", "detection.caption_refit.steps=5"))
    assert not (tmp_path / "run").exists()
