"""A checkpoint's files changing while it is served: what a server answers with is read when it starts, never at a
request, so a file removed or rewritten mid-run changes no answer (the key file is read so too, docs/serving.md)."""

from __future__ import annotations
import pytest



@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_hierarchy_file_removed_while_serving_changes_no_answer(trained_checkpoint, keys, photos, tmp_path):
    from bbuvl.data.labels import DEFAULT_HIERARCHY
    from bbuvl.infer.predictor import Predictor
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    hierarchy = tmp_path / "hierarchy.json"  # the run config's data.hierarchy, a file beside the data
    hierarchy.write_bytes(DEFAULT_HIERARCHY.read_bytes())
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    predictor.cfg.data.hierarchy = str(hierarchy)
    engine = Engine(predictor, "head", trained_checkpoint.name)
    hierarchy.unlink()  # the data folder moved, or the file rewritten, once the server runs
    with running(create_app(engine, keys)) as client:
        r = client.detect_file(photos[0])
        # 500 on every request before: the fault labels were read at the first answer, from a file gone by then
        assert r.status == 200, r.body
        assert r.json()["objects"] and all(isinstance(o["fault"], bool) for o in r.json()["objects"])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_weights_copied_over_in_place_while_serving_change_no_answer(trained_checkpoint, keys, photos, tmp_path):
    import os
    import shutil
    from pathlib import Path

    from bbuvl.infer.predictor import Predictor
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    folder = shutil.copytree(trained_checkpoint, tmp_path / "final")
    engine = Engine(Predictor.load(folder, device="cpu"), "head", "final")
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if str(folder) in line]
    assert not mapped, mapped  # the weights computed on the checkpoint's own pages before (safetensors maps them)
    with running(create_app(engine, keys)) as client:
        before = client.detect_file(photos[0]).json()["objects"]
        for weights in folder.glob("*.safetensors"):  # `cp` of other weights over them: the same files, rewritten
            size = weights.stat().st_size
            with weights.open("r+b") as f:
                f.write(os.urandom(size))
        after = client.detect_file(photos[0])
        # other boxes before, from weights no checkpoint held (and a file cut shorter killed the process: SIGBUS)
        assert after.status == 200 and after.json()["objects"] == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_warns_as_predict_does_of_checkpoint_files_changed_or_gone_since_training_saved_them(
        trained_checkpoint, photos, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from bbuvl.cli import app
    from tests.serve.conftest import cli_server

    folder = shutil.copytree(trained_checkpoint, tmp_path / "final")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1  # one bit of a weight: a copy's damage
    weights.write_bytes(bytes(data))
    (folder / "training_scale.json").unlink()  # lost by a copy
    said = (f"{folder}: model.safetensors changed since training saved the checkpoint; training_scale.json gone since "
            "training saved it in the checkpoint (content_digest.json records each file's SHA-256)")
    (tmp_path / "in").mkdir()
    shutil.copy(photos[0], tmp_path / "in")
    r = CliRunner().invoke(app, ["predict", "-c", str(folder), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "p.jsonl"),
                                 "--mode", "head", "--device", "cpu"], env={"COLUMNS": "400"})
    # predict named the changed file alone before, and said nothing of one gone
    assert r.exit_code == 0 and said in " ".join(r.output.split()), r.output
    with cli_server(["-c", str(folder), "--mode", "head", "--device", "cpu"], tmp_path / "serve.log") as (client, _):
        assert client.detect_file(photos[0]).status == 200
    # serve said nothing of either before
    assert said in " ".join((tmp_path / "serve.log").read_text().split())


def test_serve_of_a_checkpoint_whose_hierarchy_is_not_there_names_the_key_and_its_run_config(trained_checkpoint,
                                                                                              tmp_path, monkeypatch):
    import shutil

    import yaml
    from typer.testing import CliRunner

    from bbuvl.cli import app

    folder = shutil.copytree(trained_checkpoint, tmp_path / "final")
    config = yaml.safe_load((folder / "bbuvl.yaml").read_text(encoding="utf-8"))
    config["data"]["hierarchy"] = str(tmp_path / "gone" / "hierarchy.json")  # the run's own, left on the training machine
    (folder / "bbuvl.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("BBUVL_API_KEYS", "k" * 32)
    r = CliRunner().invoke(app, ["serve", "-c", str(folder), "--device", "cpu", "--port", "0"], env={"COLUMNS": "400"})
    said = " ".join(r.output.split())
    # Before: "cannot read label hierarchy: no such file" once the model had loaded, naming neither the key nor the run
    # config it is set in (predict names both)
    assert r.exit_code == 2 and (f"the run config's data.hierarchy ({tmp_path / 'gone' / 'hierarchy.json'} in "
                                 f"{folder / 'bbuvl.yaml'}) is not there") in said, said
