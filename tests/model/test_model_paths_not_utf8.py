"""A model folder whose path the libraries that read and write a model's files (tokenizers, safetensors: both open a
file by the UTF-8 bytes of its name) cannot open: named in GBK bytes (unpacked from a Chinese Windows archive), or named
in Chinese where the locale spells file names in GBK. Reading one was blamed on an intact tokenizer.json ("restore the
checkpoint's own tokenizer.json"), and writing one (`model export`, `model tiny`) failed with a codec error or "No such
file or directory (os error 2)" after the work; both now say why, before any."""

from __future__ import annotations

import mmap
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.model.checkpoint import CheckpointError
from bbuvl.model.loading import hf_file_problem, load_model_and_processor
from bbuvl.model.own_weights import own_weights
from bbuvl.tiny.model import build_tiny_model
from tests.locales import gbk_folder, gbk_locale, python


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_model_in_a_gbk_folder_is_refused_for_its_path_not_blamed_on_its_tokenizer_json(tiny_folder, tmp_path):
    copy = shutil.copytree(tiny_folder, gbk_folder(tmp_path) / "ck")
    with pytest.raises(CheckpointError) as refused:
        load_model_and_processor(str(copy), dtype="float32")
    said = str(refused.value)
    assert said.startswith(f"{copy}: its files cannot be read: the tokenizers and safetensors libraries open a "
                           "model's files only by names in UTF-8, and '") and "数据/ck'); rename" in said, said
    assert hf_file_problem(copy) == (None, None)  # the file is whole: read from its text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_model_named_in_chinese_where_file_names_are_gbk_is_refused_saying_so(tiny_folder, tmp_path):
    env = gbk_locale(tmp_path / "locale")
    shutil.copytree(tiny_folder, gbk_folder(tmp_path) / "ck")  # 数据/ck, as that locale names it
    # The code in ASCII (数据 escaped): its command line is read in GBK there
    said = python(env, "from bbuvl.model.loading import load_model_and_processor as load\n"
                       "try:\n load('\\u6570\\u636e/ck', 'float32')\nexcept ValueError as e:\n print(e)", cwd=tmp_path)
    assert said.startswith("数据/ck: its files cannot be read: this system spells file names in gbk, and the "
                           "tokenizers and safetensors libraries open a model's files by the UTF-8 bytes of their "
                           "names"), said


def test_a_model_folder_to_write_in_a_gbk_folder_is_refused_before_any_work(tmp_path):
    folder = gbk_folder(tmp_path)
    result = CliRunner().invoke(app, ["model", "tiny", str(folder / "tiny")], env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "codec" not in said, said
    assert "\\xca\\xfd\\xbe\\xdd/tiny: cannot hold a model (OUT): the tokenizers and safetensors libraries" in said, said
    assert list(folder.iterdir()) == []  # nothing built, nothing left


def test_weights_mapped_from_a_gbk_folder_are_copied_into_memory_of_their_own(tmp_path):
    """/proc/self/maps names each mapped file by its bytes: read as UTF-8 text, a checkpoint's weights mapped from a
    folder named in GBK failed every predict on the CPU with a UnicodeDecodeError naming no file."""
    weights = gbk_folder(tmp_path) / "model.safetensors"
    weights.write_bytes(b"\1" * mmap.PAGESIZE)
    module = torch.nn.Module()
    with weights.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        module.register_buffer("w", torch.frombuffer(mapped, dtype=torch.uint8))
        mapped_at = module.w.data_ptr()
        assert own_weights(module) == 1 and module.w.data_ptr() != mapped_at
        del module  # the mapping closes only once nothing points into it
