"""What users look at and deploy, on the session's smoke run (``conftest.smoke_run``, made
through `paw-ray train`, which writes the report at its end): the report's figures, predict on image files and shards,
batch inference with Ray Data, and the TorchScript / ONNX exports with their model card."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from paw_ray import cli
from paw_ray import config as C
from paw_ray.attributes import ATTRIBUTES
from paw_ray.data import shards
from paw_ray.data.detect import FaceDetection
from paw_ray.train.trained_run import open_run
from paw_ray.config import semantic_dict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(smoke_run) -> str:
    return smoke_run.run_dir


@pytest.fixture(scope="module")
def test_rows(run_dir):
    """The first test rows of the run's data: (image_id, encoded image bytes)."""
    run = open_run(run_dir)
    data = run.data_dir()
    f = shards.shard_files(data, shards.read_info(data), "test")[0]
    rows = pq.read_table(f, columns=["image_id", "image"]).slice(0, 4).to_pylist()
    return data, [(r["image_id"], r["image"]) for r in rows]


# --------------------------------------------------------------------------- run config

def test_run_config_is_the_one_trained(run_dir):
    run = open_run(run_dir)
    want = C.preset("smoke")
    for section in ("data", "frl", "parts", "finetune"):
        assert semantic_dict(getattr(run.cfg, section)) == semantic_dict(getattr(want, section)), section
    assert (run.cfg.student, run.cfg.student_width) == (want.student, want.student_width)
    assert os.path.exists(os.path.join(run_dir, "config.json"))


# --------------------------------------------------------------------------- report

def test_train_wrote_a_report_whose_figures_are_real_pngs(run_dir):
    report = os.path.join(run_dir, "report")
    page = open(os.path.join(report, "index.html"), encoding="utf-8").read()
    sources = re.findall(r'<img src="([^"]+)"', page)
    expected = {"accuracy.png", "pointing.png", "heatmaps.png", "part_boxes.png", "rsl.png", "arl.png", "curves.png",
                "reliability.png"}
    assert expected <= set(sources)
    for src in sources:
        assert not os.path.isabs(src) and "/" not in src, "figures sit beside index.html"
        with Image.open(os.path.join(report, src)) as im:
            assert im.format == "PNG"
            im.verify()
        with Image.open(os.path.join(report, src)) as im:
            assert im.width > 200 and im.height > 200, (src, im.size)
    # the Table 5 table: one header per attribute, a row per network
    for name in ATTRIBUTES:
        assert f"<th>{name.replace('_', ' ')}</th>" in page
    for row in ("FRL branch", "Whole-only", "Part-only", "PaW", "majority"):
        assert row in page
    assert run_dir in page and "smoke" in page


def test_report_tables_the_fitted_threshold_of_every_attribute(run_dir):
    page = open(os.path.join(run_dir, "report", "index.html"), encoding="utf-8").read()
    section = page[page.index("<h2>Decision rule and calibration</h2>"):]
    section = section[:section.index("</section>")]
    results = open_run(run_dir).results
    for j, name in enumerate(ATTRIBUTES):
        cells = re.search(rf"<tr><th>{name}</th><td>([^<]+)</td><td>([^<]+)</td>", section)
        assert cells, name
        assert float(cells[1]) == pytest.approx(results["temperature"]["paw"][j], abs=0.006)
        assert float(cells[2]) == pytest.approx(results["thresholds"]["paw"][j], abs=6e-4)
    assert f"{results['n_val']} validation images" in section


def test_report_figures_name_the_run_and_the_arl_has_40_names(run_dir):
    meta = json.load(open(os.path.join(run_dir, "report", "figures.json")))
    assert meta["run_dir"] == run_dir and meta["preset"] == "smoke"
    arl = meta["figures"]["arl"]
    names = [a.replace("_", " ") for a in ATTRIBUTES]
    assert arl["xticklabels"] == names and arl["yticklabels"] == names
    for fig in meta["figures"].values():
        assert fig["title"] and fig["width"] > 200 and fig["height"] > 200


def test_report_command_rewrites_the_report_elsewhere(run_dir, tmp_path, capsys):
    out = str(tmp_path / "rep")
    assert cli.main(["report", "--run-dir", run_dir, "--out", out]) == 0
    assert capsys.readouterr().out.strip() == os.path.join(out, "index.html")
    assert len([f for f in os.listdir(out) if f.endswith(".png")]) == 8


# --------------------------------------------------------------------------- predict

def _predict(capsys, argv):
    rc = cli.main(["predict", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@dataclass(frozen=True)
class FolderPrediction:
    """One ``paw-ray predict`` over a folder (three test faces, a non-square JPEG, a corrupt
    JPEG), a text file and the first face again, with ``--explain``; each image is the face
    (``--detect none``), as SynthFaces images are."""

    rc: int
    stderr: str
    inputs: list[str]  # the readable inputs, in the order given
    preds: list[dict]
    explain: str


@pytest.fixture(scope="module")
def folder_prediction(run_dir, test_rows, tmp_path_factory) -> FolderPrediction:
    _, rows = test_rows
    tmp = tmp_path_factory.mktemp("predict-folder")
    folder = tmp / "imgs"
    folder.mkdir()
    paths = []
    for image_id, data in rows[:3]:
        p = folder / f"{image_id}.png"
        Image.open(io.BytesIO(data)).save(p)
        paths.append(str(p))
    Image.open(paths[0]).convert("RGB").resize((60, 90)).save(folder / "tall.jpg")  # not square
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage, not a JPEG")
    notes = tmp / "notes.txt"
    notes.write_text("not an image")
    out, explain, err = tmp / "pred.jsonl", tmp / "explain", io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = cli.main(["predict", "--run-dir", run_dir, str(folder), str(notes), paths[0],
                       "--out", str(out), "--explain", str(explain), "--detect", "none"])
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = [os.path.basename(p) for p in paths] + ["tall.jpg", os.path.basename(paths[0])]
    return FolderPrediction(rc, err.getvalue(), inputs, preds, str(explain))


def test_predict_names_each_unreadable_input_and_exits_1(folder_prediction):
    assert folder_prediction.rc == 1, "a failed input makes the exit status non-zero"
    stderr = folder_prediction.stderr
    assert "corrupt.jpg" in stderr and "notes.txt" in stderr and "error" in stderr


def test_predict_counts_its_progress_in_faces_and_inputs(folder_prediction):
    progress = [line for line in folder_prediction.stderr.splitlines() if " input(s), " in line]
    assert progress and progress[-1].startswith("paw-ray predict: 5 face(s) from 7/7 input(s), "), progress
    assert progress[-1].endswith(" faces/s")


def test_predict_without_a_box_says_the_whole_image_is_the_face(folder_prediction):
    assert "whole image is taken as the face" in folder_prediction.stderr


def test_predict_writes_one_row_per_readable_input_in_order(folder_prediction):
    assert [os.path.basename(p["input"]) for p in folder_prediction.preds] == folder_prediction.inputs


def test_predicted_decisions_apply_the_thresholds_evaluate_fitted(run_dir, folder_prediction):
    results = open_run(run_dir).results
    thresholds = results["thresholds"]["paw"]
    assert results["n_val"] > 0 and any(t != 0.5 for t in thresholds), "the smoke run fits a rule of its own"
    for p in folder_prediction.preds:
        probs = np.array([p["probabilities"][a] for a in ATTRIBUTES])
        assert probs.shape == (40,) and ((probs >= 0) & (probs <= 1)).all()
        assert p["decision_rule"] == results["threshold_rule"]
        assert p["decisions"] == {a: p["probabilities"][a] > t for a, t in zip(ATTRIBUTES, thresholds)}


def test_predict_calibrates_with_the_fitted_temperature_or_none_when_fixed(run_dir, test_rows, tmp_path):
    from paw_ray.metrics import sigmoid
    from paw_ray.serve.predict import Predictor

    _, rows = test_rows
    faces = []
    for image_id, data in rows:
        faces.append(str(tmp_path / f"{image_id}.png"))
        Image.open(io.BytesIO(data)).save(faces[-1])
    run = open_run(run_dir)
    fitted = list(Predictor(run, detect="none").predict(faces))
    fixed = list(Predictor(run, decision_rule="fixed", detect="none").predict(faces))
    temperature = np.array(run.results["temperature"]["paw"])
    assert not np.allclose(temperature, 1.0), "the smoke run's temperature changes the probabilities"
    for a, b in zip(fitted, fixed):
        p = np.clip(b.probabilities, 1e-7, 1 - 1e-7)
        np.testing.assert_allclose(a.probabilities, sigmoid(np.log(p / (1 - p)) / temperature), atol=1e-4)
        assert b.rule.rule == "fixed" and (b.decisions == (b.probabilities > 0.5)).all()


def test_a_run_without_a_fitted_rule_decides_at_one_half_and_says_so(run_dir):
    from paw_ray.serve.predict import Predictor
    from paw_ray.train.manifest import RunDirError

    run = open_run(run_dir)
    fitted = run.decision_rule()
    assert fitted.rule == run.results["threshold_rule"]
    np.testing.assert_allclose(fitted.thresholds, run.results["thresholds"]["paw"])
    for older in ({k: v for k, v in run.results.items() if k not in ("temperature", "thresholds")},
                  {**run.results, "n_val": 0}):
        run.__dict__["results"] = older  # results.json as an older paw_ray, or a run with no val rows, wrote it
        rule = run.decision_rule()
        assert rule.rule == "fixed" and (rule.thresholds == 0.5).all() and (rule.temperature == 1).all()
        assert any("no fitted decision rule" in note for note in Predictor(run).notes)
    with pytest.raises(RunDirError, match="one of fitted, fixed"):
        run.decision_rule("median")


def test_predicted_part_boxes_lie_inside_the_input(folder_prediction):
    for p in folder_prediction.preds:
        w, h = p["input_size"]
        boxes = np.array([p["part_boxes"][a] for a in ATTRIBUTES])
        assert boxes.shape == (40, 4) and (boxes[:, 2:] > 0).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= w + 1e-6).all() and (boxes[:, 1] + boxes[:, 3] <= h + 1e-6).all()


def test_predict_gives_the_same_image_the_same_answer(folder_prediction):
    """Up to float32 rounding: CPU kernels may round a row differently by its position in the
    batch (1 ulp; 6e-8 between rows of identical images through the cascade), which the
    output's 6 decimals can show as 1e-6."""
    first, last = folder_prediction.preds[0], folder_prediction.preds[-1]
    p0, p1 = (np.array([p["probabilities"][a] for a in ATTRIBUTES]) for p in (first, last))
    assert np.abs(p0 - p1).max() <= 1.5e-6
    assert first["part_boxes"] == last["part_boxes"]


def test_predict_explain_writes_one_png_per_prediction(folder_prediction):
    overlays = sorted(os.listdir(folder_prediction.explain))
    assert len(overlays) == len(folder_prediction.preds)
    with Image.open(os.path.join(folder_prediction.explain, overlays[0])) as im:
        assert im.format == "PNG" and im.width > 200


def test_predict_with_a_face_box_maps_boxes_into_the_photo(run_dir, test_rows, tmp_path, capsys):
    """An in-the-wild photo: a test face pasted at (70, 20) into a larger canvas. With its box
    (--boxes CSV or --box) the network sees exactly the face's pixels: the same answer as
    the face alone, and the same part boxes shifted by (70, 20)."""
    _, rows = test_rows
    face = Image.open(io.BytesIO(rows[0][1])).convert("RGB")
    side = face.width
    canvas = Image.new("RGB", (side + 120, side + 50), (20, 80, 20))
    canvas.paste(face, (70, 20))
    photo = tmp_path / "photo.png"
    canvas.save(photo)
    face_file = tmp_path / "face.png"
    face.save(face_file)
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text(f"image,x,y,w,h\nphoto.png,70,20,{side},{side}\n")
    rc, stdout, stderr = _predict(capsys, ["--run-dir", run_dir, str(photo), "--boxes", str(boxes_csv),
                                           "--format", "csv"])
    assert rc == 0 and "whole image" not in stderr
    lines = stdout.splitlines()
    assert len(lines) == 2
    rec = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert rec["face_box_source"] == "--boxes" and float(rec["face_x"]) == 70
    for a in ATTRIBUTES:
        x, y, w, h = (float(rec[f"box_{a}_{k}"]) for k in "xywh")
        assert 70 <= x and x + w <= 70 + side and 20 <= y and y + h <= 20 + side
        assert 0 <= float(rec[f"p_{a}"]) <= 1
    rc, stdout, _ = _predict(capsys, ["--run-dir", run_dir, str(photo), "--box", f"70,20,{side},{side}"])
    boxed = json.loads(stdout)
    rc, stdout, _ = _predict(capsys, ["--run-dir", run_dir, str(face_file), "--detect", "none"])
    plain = json.loads(stdout)
    for a in ATTRIBUTES:
        assert boxed["probabilities"][a] == pytest.approx(plain["probabilities"][a], abs=1e-6)
        assert boxed["part_boxes"][a] == pytest.approx(np.add(plain["part_boxes"][a], [70, 20, 0, 0]).tolist())
        assert float(rec[f"p_{a}"]) == pytest.approx(plain["probabilities"][a], abs=1e-6)


def test_predict_on_a_shard_folder_predicts_its_test_split(run_dir, test_rows, capsys):
    data, _ = test_rows
    rc, stdout, stderr = _predict(capsys, ["--run-dir", run_dir, data])
    assert rc == 0 and "whole image" not in stderr
    preds = [json.loads(line) for line in stdout.splitlines()]
    assert len(preds) == shards.read_info(data).num_rows["test"]
    assert all(p["face_box_source"] == "shard" for p in preds)


def test_predict_refuses_a_bad_box_and_an_unfinished_run(run_dir, tmp_path, capsys):
    rc, _, stderr = _predict(capsys, ["--run-dir", run_dir, "x.png", "--box", "1,2,3"])
    assert rc == 2 and "--box" in stderr
    rc, _, stderr = _predict(capsys, ["--run-dir", str(tmp_path), "x.png"])
    assert rc == 2 and "not a run directory" in stderr


# --------------------------------------------------------------------------- batch inference

def test_batch_inference_writes_one_prediction_per_input_row(run_dir, ray_local, test_rows, tmp_path, capsys):
    from paw_ray.serve.batch import predict_shards

    data, rows = test_rows
    out = str(tmp_path / "preds")
    summary = predict_shards(run_dir, None, out, split="all", log=lambda m: None)
    info = shards.read_info(data)
    assert summary["rows"] == summary["input_rows"] == sum(info.num_rows.values())
    assert summary["images_per_s"] > 0 and summary["decode_failures"] == 0
    table = pq.read_table(out)
    ids = table.column("image_id").to_pylist()
    want = []
    for split in shards.SPLITS:
        for f in shards.shard_files(data, info, split):
            want += pq.read_table(f, columns=["image_id"]).column("image_id").to_pylist()
    assert sorted(ids) == sorted(want)
    probs = np.stack([table.column(f"p_{a}").to_numpy() for a in ATTRIBUTES], axis=1)
    assert ((probs >= 0) & (probs <= 1)).all()
    decisions = np.stack([table.column(a).to_numpy(zero_copy_only=False) for a in ATTRIBUTES], axis=1)
    results = open_run(run_dir).results
    assert summary["decision_rule"] == results["threshold_rule"]
    np.testing.assert_array_equal(decisions, probs > np.array(results["thresholds"]["paw"]))
    boxes = np.stack([np.stack(table.column(f"box_{a}").to_numpy(zero_copy_only=False)) for a in ATTRIBUTES], 1)
    assert boxes.shape == (len(ids), 40, 4) and (boxes[..., :2] >= 0).all()
    assert (boxes[..., :2] + boxes[..., 2:] <= info.image_size).all()
    # the same answer as `paw-ray predict` on the same shard rows
    rc, stdout, _ = _predict(capsys, ["--run-dir", run_dir, data])
    single = {p["image_id"]: p for p in map(json.loads, stdout.splitlines())}
    for k, image_id in enumerate(ids):
        if image_id in single:
            np.testing.assert_allclose(probs[k], [single[image_id]["probabilities"][a] for a in ATTRIBUTES],
                                       atol=2e-6)
    # an output folder that holds files is refused unless --overwrite
    with pytest.raises(Exception, match="overwrite"):
        predict_shards(run_dir, None, out, log=lambda m: None)


def test_batch_job_entrypoint_help():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, "jobs", "predict.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--run-dir" in r.stdout and "--out" in r.stdout


# --------------------------------------------------------------------------- export

@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_the_pytorch_cascade(run_dir, test_rows, tmp_path, capsys, fmt):
    import torch

    from paw_ray.eval.report import sample_faces
    from paw_ray.models.windows import part_windows
    from paw_ray.serve.export import PARITY_ATOL, deployable_cascade, run_exported

    out = tmp_path / fmt
    assert cli.main(["export", "--run-dir", run_dir, "--format", fmt, "--out", str(out)]) == 0
    written = json.loads(capsys.readouterr().out)
    contract = json.load(open(out / "model.json"))
    assert contract["parity"]["boxes_identical"] and contract["parity"]["max_abs_probability_diff"] <= PARITY_ATOL
    assert contract["input"]["dtype"] == "uint8" and contract["attributes"] == list(ATTRIBUTES)
    run = open_run(run_dir)
    rule = run.decision_rule()
    assert contract["decision"]["rule"] == run.results["threshold_rule"]
    np.testing.assert_allclose(contract["decision"]["thresholds"], run.results["thresholds"]["paw"])
    np.testing.assert_allclose(contract["decision"]["temperature"], rule.temperature, atol=1e-5)
    assert contract["face_box"]["training_faces"] == "synthfaces" and contract["face_box"]["margin"] == 0
    assert contract["face_box"]["detection"] == FaceDetection().to_json()
    assert contract["face_box"]["detection"]["detector"] in open(out / "MODEL_CARD.md").read()
    # independently: the test split's faces (another batch size than the export's check)
    cascade = run.cascade(rule)  # the eager cascade as predict uses it (chunked centres, CPU part blocks)
    images = sample_faces(run.data_dir(), cascade.image_size, n=24)["image"]
    probs, boxes = run_exported(written["model"], fmt, images)
    # Boxes: each exported window is centred on a cell where the eager cascade's upsampled
    # heatmap reaches its maximum. Where that maximum is unique the windows are identical;
    # where it is a tie (a flat peak, e.g. a map the ReLU zeroed) the runtimes' last-bit
    # differences may pick another of the tied cells, and must still pick one of them.
    s, p = cascade.image_size, cascade.part_size
    with torch.no_grad():
        x = cascade.normalise(torch.from_numpy(images))
        up = torch.nn.functional.interpolate(cascade.heatmaps(x), size=(s, s), mode="bilinear",
                                             align_corners=False).flatten(2)  # (B, 40, S*S)
        peak = up.max(dim=-1, keepdim=True).values
        on_peak = up >= peak - 1e-5 * (1 + peak.abs())
        cells = torch.arange(s * s)
        cell_centres = torch.stack(((cells % s + 0.5) / s, (cells // s + 0.5) / s), dim=-1)
        corner_of_cell = part_windows(cell_centres.unsqueeze(0), s, p)[0]  # (S*S, 2), the cascade's own rule
        exported_corners = torch.from_numpy(boxes[..., :2]).long()
        matches = (corner_of_cell.view(1, 1, -1, 2) == exported_corners.unsqueeze(2)).all(-1)  # (B, 40, S*S)
        assert (matches & on_peak).any(-1).all(), "an exported window is not on a heatmap maximum"
        assert (boxes[..., 2:] == p).all()
        unique = on_peak.sum(-1) == 1
        # Where a heatmap's maximum is a tie, either tied window is right, so the windows are compared
        # exactly only where it is unique. The smoke FRL leaves many maps flat (70-90% unique across
        # runs): enough unique ones are required for that comparison to mean something.
        assert unique.float().mean() >= 0.25, f"only {unique.float().mean():.0%} of the heatmaps have one peak"
        ref_b = cascade(torch.from_numpy(images))[1].numpy()
        np.testing.assert_array_equal(boxes[unique.numpy()], ref_b[unique.numpy()])
        # Probabilities: given the exported windows, the eager PaW gives the same on every face.
        ref_p = torch.sigmoid(cascade.logits_at(x, exported_corners) / cascade.temperature).numpy()
    np.testing.assert_allclose(probs, ref_p, rtol=0, atol=PARITY_ATOL)
    assert deployable_cascade(run).one_pass
    card = (out / "MODEL_CARD.md").read_text()
    results = run.results
    assert f"{100 * results['mean_accuracy']['paw']:.2f}%" in card
    for needle in ("SynthFaces", "synthetic", "Attractive", "label noise", "Demographic skew", "smoke",
                   "Intended use", "program", f"{contract['parameters']['total']:,}"):
        assert needle in card, needle
