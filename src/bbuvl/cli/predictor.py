"""What `bbuvl predict` and `bbuvl serve` run: a checkpoint written by `bbuvl train`, or a plain model folder.

A plain Hugging Face model folder (the zero-shot baseline) has no prompt of its own: it answers in generate mode
with the label vocabulary given by `--labels`. Both commands take the same options and read the folder here
(`read_folder`, then `Predictor.load`), and take their `--mode` help and checks from the registry of modes, so
the two can never disagree on which folders and modes they accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bbuvl.cli.common import fail, finite_range, int_range, one_of, refuse_unused

if TYPE_CHECKING:
    from bbuvl.model.checkpoint import ModelFolder

CHECKPOINT_HELP = ("Checkpoint folder written by `bbuvl train`, or a plain Hugging Face model folder (the zero-shot "
                   "baseline: generate mode, needs --labels unless it holds its own labels.json, as an export does).")
LABELS = typer.Option(None, "--labels", help="A plain model folder's label vocabulary: a dataset's labels.json or a JSON "
                      "list of labels (default: the folder's own labels.json, which an export holds).")
LANG = typer.Option("zh", help="A plain model folder's prompt language: zh | en (an export's labels.json records its "
                    "own, used when this is not given).", callback=one_of("zh", "en"))
# What a photo's answer is filtered and judged by, the same options (and checks) for predict and serve
SCORE_THRESHOLD = typer.Option(None, "--score-threshold", help="Drop objects scoring below this (in [0, 1]).",
                               callback=finite_range(0, 1))
OBJECTNESS_THRESHOLD = typer.Option(None, "--objectness-threshold", help="Head mode: keep queries at least this sure an "
                                    "object is there (default: inference.objectness_threshold).",
                                    callback=finite_range(0, 1))
MAX_NEW_TOKENS = typer.Option(None, "--max-new-tokens", help="Generate and teachers modes: the answer's token budget "
                              "(default: inference.max_new_tokens).", callback=int_range(1))
CONSTRAINED = typer.Option(None, "--constrained/--no-constrained", help="Allow only well-formed answers "
                           "(generate/teachers modes) and head captions (head/name modes) with the checkpoint's labels "
                           "(default: inference.constrained).")
VERDICT_REVIEW = typer.Option(None, "--verdict-review", help="A fault scoring at least this sends its photo to review, "
                              "tiled or not (default: the checkpoint's verdict_thresholds.json, else "
                              "inference.verdict_review; for photos predicted through tiles or zoom its "
                              "verdict_thresholds_tiled.json first).", callback=finite_range(0, 1))
VERDICT_FAIL = typer.Option(None, "--verdict-fail", help="A fault scoring at least this fails its photo, tiled or not "
                            "(default: the checkpoint's verdict_thresholds.json, else inference.verdict_fail; for "
                            "photos predicted through tiles or zoom its verdict_thresholds_tiled.json first).",
                            callback=finite_range(0, 1))
HIERARCHY = typer.Option(None, "--hierarchy", help="Label hierarchy JSON saying which labels are faults (default: the run "
                         "config's data.hierarchy, else the shipped one; docs/faults.md).")


def answer_options(score_threshold: float | None, objectness_threshold: float | None, constrained: bool | None,
                   verdict_review: float | None, verdict_fail: float | None, max_new_tokens: int | None) -> dict:
    """The answer options typed (`PredictOptions` fields; those not typed left to the checkpoint). A verdict threshold
    given judges every photo: a tiled photo's own pair from the checkpoint would otherwise judge it at a number the
    user did not give."""
    given = {k: v for k, v in (("score_threshold", score_threshold), ("objectness_threshold", objectness_threshold),
                               ("constrained", constrained), ("verdict_review", verdict_review),
                               ("verdict_fail", verdict_fail), ("max_new_tokens", max_new_tokens)) if v is not None}
    return given | {f"{k}_tiled": v for k, v in (("verdict_review", verdict_review), ("verdict_fail", verdict_fail))
                    if v is not None}


def read_hierarchy(hierarchy: Path | None):  # noqa: ANN201 - Faults | None
    """The faults `--hierarchy` marks (None when not given), read before the model loads: a missing, foreign or bad
    file is one red line naming it."""
    from bbuvl.cli.common import require_file, user_errors
    from bbuvl.data.faults import Faults

    if hierarchy is None:
        return None
    require_file(hierarchy, "--hierarchy", "label hierarchy JSON file")  # a FIFO was waited on forever
    with user_errors(ValueError, OSError):
        return Faults.load(hierarchy)


# What `bbuvl model export` writes beside the weights: the labels the model answers with and its prompt's language.
OWN_LABELS = "labels.json"


def mode_help(serving: bool = False) -> str:
    """`--mode`'s help, from the registry of modes (config.py `PREDICT_MODES`)."""
    from bbuvl.config import PREDICT_MODES

    modes = [m for m in PREDICT_MODES.values() if m.serves or not serving]
    return " | ".join(f"{m.name} ({m.help})" for m in modes) + " (default: the checkpoint's inference.mode)."


def check_mode_name(mode: str | None, serving: bool = False) -> None:
    """Fail (one red line) on a mode the registry does not have, or one the server does not run."""
    from bbuvl.config import PREDICT_MODES

    names = [name for name, m in PREDICT_MODES.items() if m.serves or not serving]
    if mode is not None and mode not in names:
        fail(f"--mode must be one of {', '.join(names)}, got '{mode}'")


def plain_model_mode(checkpoint: Path, labels: Path | None, lang: str, mode: str | None,
                     lang_typed: bool = False) -> str | None:
    """The mode to run `checkpoint` in: "generate" for a plain model folder whose options fit one, else `mode`.

    Fails (one red line) before any loading when a plain folder lacks --labels or asks for a mode that needs a
    trained detection head, or when --labels, or a typed --lang (`lang_typed`), is given to a trained checkpoint,
    which answers with its own labels in its own language.
    """
    from bbuvl.model.checkpoint import CONFIG_FILE, is_plain_model_folder

    if not is_plain_model_folder(checkpoint):
        if labels is not None:
            # A folder that is not there (or a file) is no plain model folder either: it was "a bbu-vl checkpoint".
            if (problem := checkpoint_folder_problem(checkpoint)) is not None:
                fail(problem)
            fail(f"--labels is for a plain model folder; {checkpoint} is a bbu-vl checkpoint and answers with the labels "
                 "it was trained on")
        if lang_typed and (checkpoint / CONFIG_FILE).is_file():  # --lang en changed nothing, without a word
            fail(f"--lang is for a plain model folder; {checkpoint} is a bbu-vl checkpoint and answers in the language "
                 "its prompt was trained in (its data.lang)")
        return mode
    if labels is None:
        fail(f"{checkpoint} is a plain model folder (no {CONFIG_FILE}): give its label vocabulary with --labels labels.json")
    from bbuvl.config import PREDICT_MODES

    plain = [name for name, m in PREDICT_MODES.items() if m.plain_model]
    if mode is not None and mode not in plain:
        fail(f"a plain model folder predicts in {' or '.join(plain)} mode only (--mode {mode} needs a trained checkpoint)")
    if lang not in ("zh", "en"):
        fail(f"--lang must be zh or en, got '{lang}'")
    return mode or plain[0]


def checkpoint_folder_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` is no folder to read a model from (missing, or a file), naming it; None when it is a folder."""
    from bbuvl.model.checkpoint import no_folder

    missing = no_folder(checkpoint)
    return None if missing is None else f"{checkpoint}: {missing} (--checkpoint)"


def plain_labels(checkpoint: Path, labels: Path | None, lang: str, lang_typed: bool) -> tuple[Path | None, str]:
    """A plain model folder's labels file and prompt language: `--labels`, else the folder's own labels.json (what
    `bbuvl model export` writes); and the language that file records (an export's prompt's), unless --lang was typed
    (a typed one that differs is refused: it would ask in another language than the model answers in)."""
    from bbuvl.data.jsonfile import read_json
    from bbuvl.model.checkpoint import is_plain_model_folder

    if not is_plain_model_folder(checkpoint):
        return labels, lang
    own = checkpoint / OWN_LABELS
    if labels is None and own.is_file():
        labels = own
    if labels is None or not labels.is_file():
        return labels, lang
    try:
        recorded = read_json(labels, "labels file")
    except ValueError as e:
        fail(str(e))
    said = recorded.get("lang") if isinstance(recorded, dict) else None
    if said is not None and said not in ("zh", "en"):
        # An export's own language, hand-edited to 'fr' or 'EN', was dropped without a word for --lang's default
        fail(f"{labels}: 'lang' must be zh or en (the language of the prompt its model answers), got {said!r}")
    if said is None:
        return labels, lang
    if lang_typed and lang != said:
        fail(f"--lang {lang}, but {labels} records the prompt in '{said}' (the language its model was trained to answer "
             "in): leave --lang out, or give a labels file of your own")
    return labels, said


def typed(ctx: typer.Context, name: str) -> bool:
    """Whether the option of parameter `name` was given (on the command line or from the environment), not defaulted."""
    # By name: typer's context may carry its own copy of click's ParameterSource enum, not click.core's.
    return getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")


def read_folder(checkpoint: Path, labels: Path | None, lang: str) -> "ModelFolder":
    """The checkpoint read, or the plain model folder described with the `labels` file's vocabulary and the system
    prompt it records (an export's: the one its checkpoint trained with; options checked first with
    `plain_model_mode`): cheap, no weights, so a command reads it before its other checks."""
    from bbuvl.data.layout import read_vocabulary, recorded_prompt
    from bbuvl.model.checkpoint import is_plain_model_folder, read_model_folder

    if is_plain_model_folder(checkpoint) and labels is not None:
        return read_model_folder(checkpoint, read_vocabulary(labels), lang, system=recorded_prompt(labels))
    return read_model_folder(checkpoint)



def diverged_warning(checkpoint: Path) -> str | None:
    """What `bbuvl predict` and `bbuvl serve` warn of a checkpoint whose run's last loss logged before it was saved was
    not finite (train/run_health.py), else None. A warning, not a refusal: the non-finite guard skips such steps, so
    their weights may still be whole; `bbuvl doctor model` runs the model and says. Unsaid, a run dead of NaN answered
    `[]` for every photo, each judged "pass"."""
    from bbuvl.train.run_health import loss_record

    record = loss_record(checkpoint)
    if record is None or not record.diverged:
        return None
    return (f"{checkpoint}: its run had diverged when it saved it: {record.said()}. A dead model finds nothing, and "
            f"every photo would pass: `bbuvl doctor model {checkpoint}` says whether it still answers")


def read_through_config(checkpoint: Path, cfg, mode: str | None = None,  # noqa: ANN001 - a Config
                        teachers: Path | None = None) -> dict[str, Path | None]:
    """What predicting with `checkpoint` reads where its run config, not the command line, names it (for
    `check_not_inputs`): the hierarchy whose faults judge each photo, teachers mode's teachers JSONL when --teachers
    is not given, and a LoRA checkpoint's base model."""
    from bbuvl.model.checkpoint import lora_base

    return {"--checkpoint's data.hierarchy": cfg.data.hierarchy,
            "--checkpoint's data.teachers": cfg.data.teachers if mode == "teachers" and teachers is None else None,
            "--checkpoint's base model": lora_base(checkpoint) if (checkpoint / "adapter_config.json").is_file() else None}


TILES = typer.Option(None, "--tiles", help="Small parts (docs/tiles.md): off | auto | COLSxROWS, e.g. 2x2: predict on "
                     "overlapping tiles, each at the checkpoint's frame; auto: the grid that shows the photo at the "
                     "scale `bbuvl choose-tiles` chose, else at the one the checkpoint trained at (default: "
                     "inference.tiles).")
TILE_ZOOM = typer.Option(None, "--tile-zoom", help="Show tiles and zoomed containers at this many frame pixels per stored "
                         "pixel, the scale `bbuvl data tile --zoom` trained at (default: inference.tile_zoom; where that is "
                         "null, each tile fills the whole photo's frame).", callback=finite_range(0, 8, lo_open=True))
TILE_STRIDE = typer.Option(None, "--tile-stride", help="Keep the grid's tile size and start tiles at most this share of a "
                           "tile's side apart, so that more parts are whole in some tile (default: inference.tile_stride; "
                           "docs/tiles.md, \"Tiles a stride apart\").", callback=finite_range(0.25, 1))
TILE_WHOLE = typer.Option(None, "--tile-whole/--tiles-only", help="Also predict the whole photo, for objects no tile "
                          "holds whole (default: inference.tile_whole).")
TILE_REFINE = typer.Option(None, "--tile-refine", help="Comma-separated categories whose whole-photo boxes take their "
                           "short side and state from the tiles (a long thin air baffle), or none (default: "
                           "inference.tile_refine, else those `bbuvl choose-tiles` chose; docs/tiles.md, \"Thin parts "
                           "from the tiles\").")
ZOOM_INTO = typer.Option(None, "--zoom-into", help="Comma-separated categories (e.g. bbu基带处理单元): a first pass finds "
                         "them, a second predicts each one's crop at full resolution, or none (default: "
                         "inference.zoom_containers).")


def refuse_untiled(ctx: typer.Context, given: dict, cfg) -> None:  # noqa: ANN001 - a Config
    """Fail (predict and serve alike) when a tile option was typed but neither --tiles nor the checkpoint's inference.tiles cuts tiles (nor
    --zoom-into zooms, for --tile-zoom): it would change nothing, where the user meant it to."""
    tiled = given.get("tiles", cfg.inference.tiles) != "off"
    zoomed = bool(given.get("zoom_containers", cfg.inference.zoom_containers))
    refuse_unused(ctx, tiled, "--tiles", "tile_stride", "tile_whole", "tile_refine")
    refuse_unused(ctx, tiled or zoomed, "--tiles or --zoom-into", "tile_zoom")


def tile_options(tiles: str | None, tile_zoom: float | None, tile_whole: bool | None, zoom_into: str | None,
                 tile_stride: float | None = None, tile_refine: str | None = None) -> dict:
    """The prediction options the tile flags give (those left unset keep the checkpoint's defaults); a grid that is
    not one fails here, before any model loads."""
    if tiles is not None and tiles.strip().lower() not in ("off", "auto"):
        from bbuvl.data.regions import parse_grid

        try:
            parse_grid(tiles)
        except ValueError as e:
            fail(f"--tiles: {e}")
    given: dict = {"tiles": tiles, "tile_zoom": tile_zoom, "tile_whole": tile_whole, "tile_stride": tile_stride,
                   "zoom_containers": None if zoom_into is None else categories(zoom_into, "--zoom-into"),
                   "tile_refine": None if tile_refine is None else categories(tile_refine, "--tile-refine")}
    return {k: v for k, v in given.items() if v is not None}


def categories(text: str, option: str) -> list[str]:
    """`a, b` -> the categories, each once; `none` -> none; fails (one red line) on commas alone (' , ,'), which turned zoom
    or refinement off as `none` does, where categories were meant."""
    if text.strip().lower() == "none":
        return []
    found = [c.strip() for c in text.split(",") if c.strip()]
    if not found:
        fail(f"{option}: no category in '{text}'; give categories separated by commas (e.g. bbu基带处理单元), or none")
    from bbuvl.data.text import label_key

    # One category named twice is that category once: as a second entry it made another resume key for the same
    # predictions, and a resume with it named once was refused.
    first: dict[str, str] = {}
    for c in found:
        first.setdefault(label_key(c), c)
    return list(first.values())


def describe_tiles(predictor, options, size: tuple[int, int]) -> str | None:  # noqa: ANN001 - Predictor, PredictOptions
    """One line on what tiles and zoom cost for a photo of `size`, in vision tokens; None for one pass."""
    from bbuvl.data.regions import MAX_GRID
    from bbuvl.infer.tiles import auto_grid, grid_shape, plan_cost, tile_step

    plan = options.plan(predictor.train_scale, predictor.part_sides, predictor.long_sides, predictor.tile_refine)
    if plan is None:
        return None
    one = predictor.contract.vision_tokens(size)
    if plan.auto and plan.part_sides and plan.whole:
        return (f"tiles auto + the whole photo: the grid follows the sizes of the parts the whole pass finds in each "
                f"photo; when it finds none, the grid of the scale the checkpoint trained at: "
                f"{plan_cost(size, plan, predictor.contract)} vision tokens for a {size[0]}x{size[1]} photo")
    cost = plan_cost(size, plan, predictor.contract)
    tiles = f"tiles {options.tiles}" if options.tiles != "off" else ""
    if plan.auto:
        cols, rows = auto_grid(size, predictor.contract, plan.train_scale)
        source = ("asked with tile_zoom" if options.tile_zoom else "chosen by `bbuvl choose-tiles`"
                  if predictor.tile_scale is not None else "the scale the checkpoint trained at"
                  if predictor.train_scale is not None else "full size: the folder records no training scale")
        tiles += f" ({cols}x{rows} at scale {plan.train_scale:g}, {source})"
    if tiles and plan.stride is not None and (cut := plan.tiles(size, predictor.contract)):
        cols, rows = grid_shape(cut)
        # A stride needing more than MAX_GRID tiles a side is capped there: "at most 0.25 apart" was said of tiles
        # 0.9 of a side apart.
        if (step := tile_step(cut)) > plan.stride + 0.01:
            tiles += (f", its tiles {cols}x{rows} {step:.2g} of a side apart, not the {plan.stride:g} asked: that needs "
                      f"more than {MAX_GRID} tiles a side on this photo; larger tiles (a coarser --tiles grid, or a lower "
                      "--tile-zoom) have room for it")
        else:
            tiles += f", its tiles {cols}x{rows} at most {plan.stride:g} of a side apart"
    if tiles and options.tile_queries is not None:
        tiles += f", {options.tile_queries} queries a tile"
    if tiles and plan.whole and plan.refine:
        tiles += f", the whole pass's {', '.join(plan.refine)} refined by the tiles"
    what = [tiles, "the whole photo" if plan.whole else "",
            f"zoom into {', '.join(plan.containers)}" if plan.containers else ""]
    return (f"{' + '.join(w for w in what if w)}: {cost} vision tokens for a {size[0]}x{size[1]} photo "
            f"({cost / max(one, 1):.1f}x one pass{', plus each container found' if plan.containers else ''})")
