"""A model folder is read once into a `ModelFolder`, and `load_model` loads either kind of folder from it."""

import json
import logging
import re
import shutil

import pytest
import yaml
from safetensors.torch import load_file, save_file

from bbuvl.data.coords import CoordinateContract
from bbuvl.model.checkpoint import CheckpointError, Prompt, finish_swap, load_model, read_model_folder, stopped_swap
from tests.model_folders import as_an_older_bbuvl_wrote_it, remove_file
from tests.reliability.test_train2_model_being_written import _hold


def test_a_checkpoint_is_read_with_its_own_config_contract_and_prompt(trained_checkpoint):
    folder = read_model_folder(trained_checkpoint)
    assert folder.trained and not folder.adapter
    assert folder.frame == CoordinateContract.load(trained_checkpoint)
    assert folder.prompt == Prompt.load(trained_checkpoint)
    assert folder.cfg.inference.max_new_tokens == 48  # the run's, not the defaults


def test_a_plain_folder_is_described_with_the_labels_it_answers_with_and_its_own_frame(tiny_model_dir):
    folder = read_model_folder(tiny_model_dir, ["线缆", "标签贴纸"], "en")
    assert not folder.trained and folder.frame is None  # its processor's own bounds, read when it loads
    assert folder.prompt.labels == ["线缆", "标签贴纸"] and folder.prompt.lang == "en"
    assert "线缆" in folder.prompt.system and not folder.cfg.detection.enabled
    model, processor, cfg, contract, prompt = load_model(folder, device="cpu")
    assert model.detection_head is None and prompt is folder.prompt
    assert (contract.min_pixels, contract.max_pixels) == (cfg.model.min_pixels, cfg.model.max_pixels)
    assert cfg is not folder.cfg  # the bounds are set on a copy: the folder stays as read


def test_labels_for_a_checkpoint_and_no_labels_for_a_plain_folder_are_errors(trained_checkpoint, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="answers with the labels and config it was trained with"):
        read_model_folder(trained_checkpoint, ["线缆"])
    with pytest.raises(ValueError, match="plain model folder .*give the labels it answers with"):
        read_model_folder(tiny_model_dir)
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        read_model_folder(tmp_path / "nowhere")
    (tmp_path / "a file").write_text("not a checkpoint", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="a file, not a checkpoint folder"):
        read_model_folder(tmp_path / "a file")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "bbuvl.yaml").write_text("{}", encoding="utf-8")
    with pytest.raises(CheckpointError, match="incomplete or damaged checkpoint"):
        read_model_folder(tmp_path / "half")


@pytest.mark.parametrize("made, said", [
    (["train.jsonl", "val.jsonl", "images/"], "a dataset folder (train.jsonl, val.jsonl), not a checkpoint"),
    (["final/", "checkpoint-2/", "history.json"], "a training run's folder, not a checkpoint: give its final/"),
    ([], "holds no model (bbuvl.yaml, config.json or weights): not a checkpoint folder"),
])
def test_a_folder_holding_no_model_is_named_for_what_it_is(tmp_path, made, said):
    from typer.testing import CliRunner

    from bbuvl.cli import app

    folder = tmp_path / "given"
    folder.mkdir()
    for name in made:
        (folder / name).mkdir() if name.endswith("/") else (folder / name).write_text("{}\n", encoding="utf-8")
    with pytest.raises(CheckpointError) as e:
        read_model_folder(folder)
    assert str(e.value) == f"{folder}: {said}" or str(e.value).startswith(f"{folder}: {said}")
    (tmp_path / "photos").mkdir()
    r = CliRunner().invoke(app, ["predict", "-c", str(folder), "-i", str(tmp_path / "photos"), "-o", str(tmp_path / "p.jsonl")],
                           env={"COLUMNS": "400"})
    assert r.exit_code == 2 and f"error: {folder}: {said}" in r.output, r.output


def test_a_checkpoint_without_its_tokenizer_is_refused_naming_the_file(trained_checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, copy)
    for name in ("tokenizer.json", "vocab.json", "tokenizer.model"):
        (copy / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"no tokenizer \(tokenizer.json or vocab.json or tokenizer.model missing\)"):
        read_model_folder(copy)


def test_merge_lora_of_a_folder_without_adapters_says_there_is_nothing_to_merge(trained_checkpoint, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app

    # Before: a whole checkpoint loaded every weight, then said 'not a LoRA checkpoint'; a plain folder was told to
    # 'give the labels it answers with', which merge-lora has no option for.
    for folder, said in ((trained_checkpoint, "not a LoRA checkpoint (no adapter_config.json): its weights are whole "
                                              "already, nothing to merge"),
                         (tiny_model_dir, "a plain model folder (no bbuvl.yaml), not a LoRA checkpoint: nothing to merge")):
        r = CliRunner().invoke(app, ["model", "merge-lora", str(folder), str(tmp_path / "merged")], env={"COLUMNS": "400"})
        assert r.exit_code == 2 and f"error: {folder}: {said}" in r.output, r.output
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json", "tokenizer_config.json"])
def test_a_checkpoint_missing_a_file_transformers_loads_is_refused_naming_it_before_any_weight_loads(
        trained_checkpoint, tmp_path, name):
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    said = remove_file(broken, name)
    # predict, serve and train --resume read a checkpoint here: transformers' own error would name something else
    # ('Unrecognized model', "Can't load video processor", 'config and tokenizer disagree')
    with pytest.raises(CheckpointError, match=re.escape(f"incomplete or damaged checkpoint ({said} missing)")):
        read_model_folder(broken)


def test_a_lora_checkpoint_without_its_adapter_weights_is_refused_naming_them(trained_checkpoint, tmp_path):
    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    for name in ("config.json", "model.safetensors"):
        (broken / name).unlink()
    (broken / "adapter_config.json").write_text("{}", encoding="utf-8")
    # Before: "config.json missing", a file a LoRA checkpoint never has, told because its weights were gone.
    with pytest.raises(CheckpointError, match=re.escape("incomplete or damaged checkpoint (adapter_model.safetensors "
                                                        "missing)")):
        read_model_folder(broken)


def _sharded(folder, shards: int) -> None:
    """`folder`'s model.safetensors as the first of `shards` shards with its index, as save_pretrained lays out a model
    over its max_shard_size (each base Qwen VL checkpoint on the hub)."""
    weights = load_file(folder / "model.safetensors")
    names = [f"model-{k:05d}-of-{shards:05d}.safetensors" for k in range(1, shards + 1)]
    (folder / "model.safetensors").rename(folder / names[0])
    index = {"metadata": {}, "weight_map": {key: names[i % shards] for i, key in enumerate(sorted(weights))}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")


@pytest.mark.parametrize("plain", [False, True], ids=["checkpoint", "plain folder"])
def test_a_sharded_model_missing_a_shard_or_its_index_is_refused_naming_it(trained_checkpoint, tiny_model_dir,
                                                                           tmp_path, plain):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir if plain else trained_checkpoint, broken)
    _sharded(broken, 2)
    labels = ["线缆"] if plain else None
    # Before: transformers' "No such file or directory" once the other shard had loaded (a plain folder), or nothing
    # said before the weights loaded; without the index, its "no file named model.safetensors", naming neither.
    with pytest.raises(CheckpointError, match=re.escape("model-00002-of-00002.safetensors missing, of the 2 weights "
                                                        "files model.safetensors.index.json names")):
        read_model_folder(broken, labels)
    (broken / "model.safetensors.index.json").unlink()
    with pytest.raises(CheckpointError, match=re.escape("model.safetensors.index.json missing (it maps each tensor to "
                                                        "one of the shards model-00001-of-00002.safetensors, ...)")):
        read_model_folder(broken, labels)


def test_a_checkpoint_missing_several_files_names_each_once_in_one_list(trained_checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    gone = [remove_file(broken, name) for name in ("preprocessor_config.json", "tokenizer_config.json")]
    with pytest.raises(CheckpointError, match=re.escape(f"incomplete or damaged checkpoint ({', '.join(gone)} missing)")):
        read_model_folder(broken)


@pytest.mark.parametrize("video", [True, False], ids=["with its video processor", "image processor alone"])
def test_a_checkpoint_saved_with_a_video_processor_is_whole_and_loads_and_predicts(trained_checkpoint, tmp_path, video):
    """Where torchvision imports (the GPU machines), transformers loads the stock processor, whose save nests the
    image processor, beside a video processor, in processor_config.json and writes no preprocessor_config.json: every
    checkpoint trained on an H200 was refused as incomplete by predict. The layout is the one such a run wrote; with
    the image processor alone nested there, transformers' stock loader found no video processor settings at all."""
    import shutil

    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.processor import pixel_range, saved_pixel_range

    folder = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, folder)
    (folder / "preprocessor_config.json").unlink()
    saved = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
    settings = {**saved["image_processor"], "do_sample_frames": False, "max_frames": 768, "min_frames": 4,
                "video_processor_type": "Qwen2VLVideoProcessor"}
    settings.pop("image_processor_type")
    if video:
        saved["video_processor"] = settings
    (folder / "processor_config.json").write_text(json.dumps(saved), encoding="utf-8")
    assert read_model_folder(folder).trained
    assert saved_pixel_range(folder) == saved_pixel_range(trained_checkpoint) is not None
    predictor = Predictor.load(folder, device="cpu")
    assert pixel_range(predictor.processor) == saved_pixel_range(trained_checkpoint)
    assert predictor.contract == read_model_folder(trained_checkpoint).frame


def test_a_checkpoint_path_that_is_a_file_or_a_dead_link_is_named_as_what_it_is(tmp_path):
    """A link whose target is gone (or a loop of links) was "no such checkpoint folder", with the link right there."""
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "gone").symlink_to(tmp_path / "moved-away")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    with pytest.raises(NotADirectoryError, match="a.txt: a file, not a checkpoint folder"):
        read_model_folder(tmp_path / "a.txt")
    for name in ("gone", "loop1"):
        with pytest.raises(FileNotFoundError, match=f"{name}: a link that reaches no checkpoint folder"):
            read_model_folder(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="nothing: no such checkpoint folder"):
        read_model_folder(tmp_path / "nothing")


def test_a_trained_checkpoints_files_are_readable_as_its_config_is(trained_checkpoint):
    """safetensors 0.8 creates its files 0600: a colleague who could read a checkpoint's config.json got
    PermissionError on its weights (every file here must carry what a plain open() gives under the umask)."""
    import os
    from pathlib import Path

    umask = os.umask(0)
    os.umask(umask)
    wanted = 0o666 & ~umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in Path(trained_checkpoint).iterdir() if p.is_file()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert {name: oct(m) for name, m in modes.items() if m & wanted != wanted} == {}


def test_an_older_bbuvls_checkpoint_answers_in_generate_mode_and_its_head_is_refused_as_an_older_layout(
        trained_checkpoint, small_dataset, tmp_path, caplog):
    from bbuvl.infer.predictor import Predictor

    old = tmp_path / "old"
    shutil.copytree(trained_checkpoint, old)
    as_an_older_bbuvl_wrote_it(old)  # whole, as the oldest bbu-vl of this history saved it
    with caplog.at_level(logging.WARNING, logger="bbuvl"):
        predictor = Predictor.load(old, device="cpu")  # was refused: "bbuvl.yaml and the file come from different runs"
    said = [r.getMessage() for r in caplog.records if "older bbu-vl" in r.getMessage()]
    assert len(said) == 1 and "detection.encoder_layers" in said[0] and said[0].endswith("generate mode only"), said
    assert predictor.model.detection_head is None
    with pytest.raises(ValueError) as refused:
        predictor.check_mode("head")
    why = str(refused.value)
    assert f"{old / 'detection_head.safetensors'}: written by an older bbu-vl" in why
    assert "detection.encoder_layers" in why and "different runs" not in why and "re-copy" not in why
    photo = next((small_dataset / "images").glob("val_*"))
    [result] = predictor.predict([photo], "generate")
    assert result.error is None and result.raw is not None


def test_a_head_of_another_run_beside_a_whole_bbuvl_yaml_is_still_named_so(trained_checkpoint, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_checkpoint, other)
    head = load_file(other / "detection_head.safetensors")  # the encoder gone, but bbuvl.yaml builds one: not older
    save_file({k: v for k, v in head.items() if not k.startswith("encoder.")}, other / "detection_head.safetensors")
    with pytest.raises(CheckpointError, match="come from different runs"):
        load_model(other, device="cpu")


def _with_setting(checkpoint, tmp_path, section: str, key: str, value):
    """A copy of `checkpoint` whose bbuvl.yaml sets `section.key` to `value` (as a user's edit would)."""
    copy = tmp_path / "ckpt"
    shutil.copytree(checkpoint, copy)
    saved = yaml.safe_load((copy / "bbuvl.yaml").read_text(encoding="utf-8"))
    saved[section][key] = value
    (copy / "bbuvl.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True), encoding="utf-8")
    return copy


def test_trained_vision_positions_a_config_turns_off_are_refused_naming_the_file_and_the_key(trained_checkpoint, tmp_path):
    from bbuvl.infer.predictor import Predictor

    assert (trained_checkpoint / "vision_positions.safetensors").is_file()
    copy = _with_setting(trained_checkpoint, tmp_path, "model", "vision_positions", False)
    # Before: loaded without them, every mode seeing each photo otherwise than it trained, and not a word.
    with pytest.raises(CheckpointError) as said:
        Predictor.load(copy, device="cpu")
    assert str(said.value).startswith(f"{copy / 'vision_positions.safetensors'}: the checkpoint holds trained vision "
                                      f"positions, but {copy / 'bbuvl.yaml'} sets model.vision_positions false")
    assert "set model.vision_positions: true there" in str(said.value)


def test_a_head_file_a_config_turns_off_leaves_generate_mode_running_and_the_head_modes_refused(trained_checkpoint,
                                                                                               tmp_path):
    from bbuvl.infer.predictor import Predictor

    copy = _with_setting(trained_checkpoint, tmp_path, "detection", "enabled", False)
    predictor = Predictor.load(copy, device="cpu")  # generate mode reads no head: a head-less use is the user's to make
    assert predictor.model.detection_head is None and predictor.model.vision_positions is not None
    predictor.check_mode("generate")
    with pytest.raises(ValueError, match="needs a checkpoint with a detection head"):
        predictor.check_mode("head")


def test_a_final_a_swap_killed_as_pid_1_set_aside_is_named_and_put_back_and_a_running_writers_is_not(trained_checkpoint,
                                                                                                        tmp_path):
    # A swap killed between its renames as pid 1 (a container's bbuvl) left final/ aside as `.final.1.XXXXXXXX.old`:
    # pid 1 always runs, so readers said only "no such checkpoint folder" and the next writer never put it back
    run = tmp_path / "run"
    aside = run / ".final.1.abcdefgh.old"
    shutil.copytree(trained_checkpoint, aside / "final")
    assert stopped_swap(run / "final").startswith(f"a save replacing it was stopped between its two renames, and "
                                                  f"{aside / 'final'} holds the one before, whole.")
    child = _hold(run, "train")  # a train of another process holding the run: between its renames, not stopped
    try:
        assert stopped_swap(run / "final") is None
        with pytest.raises(FileNotFoundError, match=r"no such checkpoint folder$"):
            read_model_folder(run / "final")
    finally:
        child.kill()
        child.wait()
    assert finish_swap(run / "final") == aside / "final"
    assert sorted(p.name for p in run.iterdir()) == ["final"]


def test_the_note_of_files_changed_or_gone_since_training_saved_a_checkpoint_names_each(tmp_path):
    from bbuvl.model.identity import record_digests, saved_files_note

    folder = tmp_path / "final"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "lora_base.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    record_digests(folder)
    assert saved_files_note(folder) is None
    (folder / "config.json").write_text('{"edited": 1}', encoding="utf-8")
    (folder / "lora_base.json").unlink()
    # predict said only what changed, and nothing of a file gone; serve said neither
    assert saved_files_note(folder) == (f"{folder}: config.json changed since training saved the checkpoint; "
                                        "lora_base.json gone since training saved it in the checkpoint "
                                        "(content_digest.json records each file's SHA-256): copy it again, unless the "
                                        "change is an edit of your own")


def test_a_plain_folders_pytorch_weights_cut_short_or_missing_a_shard_are_refused_naming_them(tiny_model_dir, tmp_path):
    import torch

    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")  # an older base model's weights, as torch.save writes them
    read_model_folder(folder, ["线缆"])  # whole: read as before
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[:len(data) // 2])
    # Before: torch's bare "Invalid argument" from predict, serve and train, naming no file
    with pytest.raises(CheckpointError, match=re.escape(f"pytorch_model.bin: {len(data) // 2} bytes, its archive's end "
                                                        "missing (a copy cut short?)")):
        read_model_folder(folder, ["线缆"])
    (folder / "pytorch_model.bin").rename(folder / "pytorch_model-00001-of-00002.bin")
    index = {"weight_map": {key: f"pytorch_model-0000{1 + i % 2}-of-00002.bin" for i, key in enumerate(weights)}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(CheckpointError, match=re.escape("pytorch_model-00002-of-00002.bin missing, of the 2 weights "
                                                        "files pytorch_model.bin.index.json names")):
        read_model_folder(folder, ["线缆"])
