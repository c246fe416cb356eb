"""A resume trains on with the prompt its checkpoint trained with (its prompt.json), or is refused naming how the one it
would build differs: bbu-vl writes the prompt from the run's data, hierarchy and data.lang, so a bbu-vl upgraded since
may word it otherwise, and the resumed run went on in silence with another system text or label list."""

from __future__ import annotations

import pytest

from bbuvl.model.checkpoint import Prompt
from bbuvl.train.run_record import ResumeMismatch
from bbuvl.train.trainer import check_same_prompt

NOW = Prompt("Find the parts. Labels: 挡风板/已安装, 标签贴纸.", ["挡风板/已安装", "标签贴纸"], "en")


@pytest.mark.parametrize(("then", "says"), [
    (Prompt("Find every part. Labels: 挡风板/已安装, 标签贴纸.", NOW.labels, "en"),
     r"its system text, from character 5: 'Find every part. Labels: .*' \(now 'Find the parts. Labels: .*'\)"),
    (Prompt(NOW.system, ["挡风板/已安装", "线缆"], "en"), r"its labels '线缆' no longer offered; '标签贴纸' new"),
    (Prompt(NOW.system, list(reversed(NOW.labels)), "en"), r"its labels in another order"),
])
def test_a_resume_whose_prompt_is_not_its_checkpoints_is_refused_naming_the_difference(tmp_path, then, says):
    ckpt = tmp_path / "run" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    then.save(ckpt)  # as the bbu-vl the run started with wrote it
    with pytest.raises(ResumeMismatch, match=rf"--resume from {ckpt}: the prompt this run builds is not the one it "
                                             rf"trained with \({ckpt / 'prompt.json'}\): {says}.*\(upgraded since\?\)"):
        check_same_prompt(ckpt, NOW)
    NOW.save(ckpt)
    check_same_prompt(ckpt, NOW)
