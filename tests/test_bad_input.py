"""Bad input to every entry point: a clear error naming the input and the problem (the CLI
prints it without a traceback and exits 2), or, where the policy is to skip, a count of what
was skipped — and an existing run directory is left as it was.

Covered elsewhere, not repeated here:
- annotation files, line by line (missing, truncated, wrong column count, wrong values,
  CRLF / LF / CR line ends, mismatched and duplicate ids, --allow-partial counts):
  ``test_celeba.py`` (``BAD_INPUTS``, ``test_id_in_*``, ``test_missing_files_*``,
  ``test_allow_partial_*``);
- images when preparing CelebA (zero bytes, truncated, not an image, huge, grayscale, CMYK,
  unusual sizes): ``test_celeba.py`` (``test_prepare_*``); an undecodable image in a shard
  is skipped and counted by the training stream: ``test_stream.py``
  (``test_corrupt_image_is_counted_not_fatal``);
- config keys, types and values for ``--set`` and YAML: ``test_config.py``;
- corrupted manifests: ``test_manifest.py``; a changed config reruns the stages it touches
  (the policy for a run directory of another config): ``test_manifest.py``,
  ``test_train_e2e.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from celeba_fixtures import huge_jpeg, make_celeba
from fake_run import artifact, make_run
from paw_ray import cli
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data import shards


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove a refused command changed nothing)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.join(root, f)] = fh.read()
    return out


# --------------------------------------------------------------------------- annotation files, CLI


@pytest.mark.parametrize("named, mutate, pattern", [
    ("root", lambda fx: fx.paths["attr"].unlink(), "CelebA files not found"),
    ("attr", lambda fx: fx.paths["attr"].write_bytes(fx.paths["attr"].read_bytes()[:700]),
     "line 1: the row count says 12 rows but the file has 2"),
    ("bbox", lambda fx: fx.set_line("bbox", 4, "000002.jpg 1 2 3 4 5"), "line 4: .*expected 4 values.*found 5"),
    ("partition", lambda fx: fx.set_line("partition", 3, "000077.jpg 0"), "000003.jpg is not in"),
], ids=["missing", "truncated", "wrong column count", "mismatched ids"])
def test_prepare_celeba_bad_annotations_exit_2(tmp_path, capsys, named, mutate, pattern):
    fx = make_celeba(tmp_path / "celeba")
    mutate(fx)
    rc, err = run_cli(capsys, "prepare-celeba", "--root", str(fx.root), "--out", str(tmp_path / "out"))
    assert rc == 2 and re.search(pattern, err), err
    assert str(fx.root if named == "root" else fx.paths[named]) in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- images, predict


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def test_predict_bad_images_are_named_and_the_good_ones_predicted(tmp_path, capsys):
    """Policy for predict: each input that fails is reported by name (exit status 1), the
    others are predicted; grayscale, CMYK and odd sizes are converted, not refused."""
    run = make_run(str(tmp_path / "run"))
    face = Image.new("RGB", (60, 60), (200, 150, 120))
    good = {"gray.jpg": _jpeg(face.convert("L")), "cmyk.jpg": _jpeg(face.convert("CMYK")),
            "thin.png": None, "ok.jpg": _jpeg(face)}
    bad = {"zero.jpg": (b"", "not an image"), "truncated.jpg": (_jpeg(face)[:200], "the image does not decode"),
           "text.jpg": (b"hello, not a picture", "not an image"),
           "huge.jpg": (huge_jpeg(30000, 30000), "image too large to decode safely")}
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (3, 200), (10, 20, 30)).save(folder / "thin.png")
    for name, data in [*((n, d) for n, d in good.items() if d), *((n, d) for n, (d, _) in bad.items())]:
        (folder / name).write_bytes(data)
    out = tmp_path / "pred.jsonl"
    rc, err = run_cli(capsys, "predict", "--run-dir", run, str(folder), "--out", str(out), "--detect", "none")
    assert rc == 1
    for name, (_, problem) in bad.items():
        assert f"{folder / name}: {problem}" in err, err
    assert f"{len(bad)} input(s) failed" in err
    predicted = sorted(os.path.basename(json.loads(line)["input"])
                       for line in out.read_text().splitlines())
    assert predicted == sorted(good)


# --------------------------------------------------------------------------- shards


def _data_set(root, empty: tuple[str, ...] = ()) -> str:
    """A valid data set of 4 tiny rows per split (no shards and no rows in the splits ``empty``)."""
    out = str(root)
    img = _jpeg(Image.new("RGB", (16, 16), (90, 90, 90)))
    files, counts = {}, {}
    for split in shards.SPLITS:
        if split in empty:
            files[split], counts[split] = [], 0
            continue
        rows = {"image_id": [f"{split}-{i}" for i in range(4)], "split": [split] * 4, "image": [img] * 4,
                "labels": [[i % 2] * NUM_ATTRIBUTES for i in range(4)], "face_box": [[0, 0, 16, 16]] * 4}
        files[split] = [shards.write_shard(shards.rows_to_table(rows), out, split, 0).path]
        counts[split] = 4
    shards.write_info(shards.DatasetInfo(name="bad-input", image_size=16, num_rows=counts, files=files), out)
    return out


def _rewrite_train(data, fn) -> str:
    """Apply ``fn`` to the train shard's table and write it back as plain Parquet (unchecked)."""
    where = os.path.join(data, "train", "shard-00000.parquet")
    pq.write_table(fn(pq.read_table(where)), where)
    return where


def _set_labels(table: pa.Table, labels: list[list[int]]) -> pa.Table:
    i = table.column_names.index("labels")
    return table.set_column(i, "labels", pa.array(labels, pa.list_(pa.int8())))


SHARD_FAULTS = [
    ("missing column", lambda d: _rewrite_train(d, lambda t: t.drop_columns(["labels"])),
     r"missing column\(s\) \['labels'\]"),
    ("wrong label length", lambda d: _rewrite_train(d, lambda t: _set_labels(t, [[0] * 39] * 4)),
     "row 0 \\(image_id 'train-0'\\) has 39 labels, expected 40"),
    ("label not 0/1", lambda d: _rewrite_train(d, lambda t: _set_labels(t, [[2] * 40] * 4)),
     "labels must be 0 or 1"),
    ("unknown split", lambda d: _rewrite_train(d, lambda t: t.set_column(1, "split", pa.array(["dev"] * 4))),
     r"unknown split value\(s\) \['dev'\]"),
    ("not Parquet", lambda d: _write(os.path.join(d, "train", "shard-00000.parquet"), b"PAR1 but no"),
     "not a readable Parquet shard"),
    ("listed shard missing", lambda d: _remove(os.path.join(d, "val", "shard-00000.parquet")),
     "shard listed in dataset.json is missing"),
    ("dataset.json corrupted", lambda d: _write(os.path.join(d, "dataset.json"), b'{"name": '),
     "not valid JSON"),
    ("dataset.json missing", lambda d: _remove(os.path.join(d, "dataset.json")),
     "not a prepared data set"),
]


def _write(where: str, data: bytes) -> str:
    with open(where, "wb") as f:
        f.write(data)
    return where


def _remove(where: str) -> str:
    os.remove(where)
    return where


@pytest.mark.parametrize("name, fault, pattern", SHARD_FAULTS, ids=[f[0] for f in SHARD_FAULTS])
def test_bad_shards_are_refused_naming_the_file(tmp_path, name, fault, pattern):
    data = _data_set(tmp_path / "data")
    shards.check_data(data)  # valid before the fault
    where = fault(data)
    with pytest.raises(shards.ShardError, match=pattern) as e:
        shards.check_data(data)
    assert where in str(e.value)


@pytest.mark.parametrize("empty, named", [(("val",), "split 'val' has"), (("val", "test"), "splits 'val' and 'test' have")])
def test_train_with_an_empty_split_exits_2_before_starting_ray(tmp_path, capsys, monkeypatch, empty, named):
    """Placed before this module's first ``ray_local`` test: no Ray runs yet, and none may start."""
    import ray

    from paw_ray.train import cluster

    def no_ray(*args, **kwargs):
        raise AssertionError("train started Ray before it checked the splits")

    assert not ray.is_initialized()
    monkeypatch.setattr(cluster, "ensure_ray", no_ray)
    data = _data_set(tmp_path / "data", empty=empty)
    run = tmp_path / "run"
    rc, err = run_cli(capsys, "train", "--preset", "smoke", "--data", data, "--run-dir", str(run))
    assert rc == 2 and f"{data}/dataset.json: {named} no rows" in err, err
    assert "list_eval_partition" in err and "--split-fraction 0.8,0.1,0.1" in err
    assert not ray.is_initialized() and not run.exists()


def test_train_on_bad_shards_exits_2_before_touching_the_run(ray_local, tmp_path, capsys):
    data = _data_set(tmp_path / "data")
    where = _rewrite_train(data, lambda t: _set_labels(t, [[0] * 39] * 4))
    run = make_run(str(tmp_path / "run"))
    before = snapshot(run)
    rc, err = run_cli(capsys, "train", "--preset", "smoke", "--data", data, "--run-dir", run)
    assert rc == 2 and f"{where}: row 0" in err and "has 39 labels" in err
    assert snapshot(run) == before


# --------------------------------------------------------------------------- configs, CLI


@pytest.mark.parametrize("args, pattern", [
    (["--set", "frl.epochs=-1"], "frl.epochs: must be >= 0, got -1"),
    (["--set", "frl.epochz=3"], r"unknown config key\(s\) \['frl.epochz'\]"),
    (["--set", "parts.num_cpus=lots"], "parts.num_cpus: expected a number, got 'lots'"),
    (["--config", "{yaml}"], r"bad.yaml: unknown config key\(s\) \['whole.learning_rate'\]"),
], ids=["negative epochs", "unknown key", "wrong type", "yaml unknown key"])
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, args, pattern):
    yaml_file = tmp_path / "bad.yaml"
    yaml_file.write_text("whole:\n  learning_rate: 0.1\n")
    run = make_run(str(tmp_path / "run"))
    before = snapshot(run)
    rc, err = run_cli(capsys, "train", "--preset", "smoke", "--run-dir", run,
                      *[a.format(yaml=yaml_file) for a in args])
    assert rc == 2 and re.search(pattern, err), err
    assert snapshot(run) == before


# --------------------------------------------------------------------------- run directories


def _corrupt(where: str, data: bytes = b'{"version": 1, "stag') -> None:
    with open(where, "wb") as f:
        f.write(data)


RUN_FAULTS = [
    # (name, fault on a made run -> None, commands it breaks, message pattern)
    ("missing", lambda run: shutil.rmtree(run), ("predict", "export"), "not a run directory"),
    ("a file", lambda run: (shutil.rmtree(run), _corrupt(run, b"x")),
     ("train", "predict", "export"), "not a (folder|run directory)"),
    ("corrupted manifest", lambda run: _corrupt(os.path.join(run, "manifest.json")),
     ("train", "predict", "export"), "manifest.json: not valid JSON"),
    ("another preset", lambda run: None, ("train",), "holds a run of the 'smoke' preset, not 'demo'"),
    ("corrupted config.json", lambda run: _corrupt(os.path.join(run, "config.json")),
     ("predict", "export"), "cannot rebuild the run's config"),
    ("truncated checkpoint", lambda run: _corrupt(artifact(run, "finetune"), open(artifact(run, "finetune"), "rb").read()[:999]),
     ("predict", "export"), "finetune/model.pt: not a readable checkpoint"),
    ("unfinished run", lambda run: os.remove(artifact(run, "finetune")), ("predict", "export"),
     "stage 'finetune' artifact .* is missing"),
]
RUN_CASES = [(name, fault, cmd, pattern) for name, fault, cmds, pattern in RUN_FAULTS for cmd in cmds]


@pytest.mark.parametrize("name, fault, command, pattern", RUN_CASES, ids=[f"{c[0]}-{c[2]}" for c in RUN_CASES])
def test_bad_run_directory_exits_2_and_is_left_as_it_was(tmp_path, capsys, name, fault, command, pattern):
    run = make_run(str(tmp_path / "run"))
    fault(run)
    before = snapshot(run) if os.path.isdir(run) else None
    argv = {"train": ["train", "--preset", "demo" if name == "another preset" else "smoke"],
            "predict": ["predict", str(tmp_path / "face.png")],
            "export": ["export", "--format", "onnx"]}[command]
    rc, err = run_cli(capsys, *argv, "--run-dir", run)
    assert rc == 2 and re.search(pattern, err), err
    assert run in err
    if before is not None:
        assert snapshot(run) == before


def test_a_report_that_fails_after_training_is_a_warning_not_a_failed_run(monkeypatch, tmp_path, capsys):
    import sys

    cli.report_after_train(str(tmp_path))  # no run there: write_report raises
    err = capsys.readouterr().err
    assert "the run is complete but its report failed" in err and f"paw-ray report --run-dir {tmp_path}" in err
    monkeypatch.setitem(sys.modules, "paw_ray.eval.report", None)  # the report module cannot even be imported
    cli.report_after_train(str(tmp_path))
    assert "report failed (ModuleNotFoundError" in capsys.readouterr().err
