"""The self-contained model folder (``paw-ray export --format folder``, ``predict --model``):
it predicts exactly what the run predicts, holds three files and no pickle, refuses weights
that do not match its config, and carries a model card that hubs can read."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml
from PIL import Image

from paw_ray import cli, storage
from paw_ray.attributes import ATTRIBUTES
from paw_ray.data.detect import FaceDetection
from paw_ray.errors import PawRayError
from paw_ray.serve.model_card import CELEBA_TERMS_URL, folder_card
from paw_ray.serve.model_folder import (
    CARD_FILE,
    CONFIG_FILE,
    FOLDER_FILES,
    WEIGHTS_FILE,
    Architecture,
    open_model_folder,
)
from paw_ray.serve.predict import Predictor
from paw_ray.train.trained_run import open_run
from fake_run import make_run
from photos import astronaut


def fitted_results(rng: np.random.Generator) -> dict:
    """A results.json as evaluate writes it, with a fitted rule far from T = 1 and 0.5, so
    that a folder which dropped or rounded the rule would decide differently."""
    acc = rng.uniform(0.6, 0.95, 40)
    return {"n_test": 200, "n_val": 200, "threshold_rule": "balanced_accuracy",
            "mean_accuracy": {"paw": float(acc.mean()), "majority": 0.8},
            "mean_balanced_accuracy": {"paw": float(acc.mean()) - 0.1, "majority": 0.5},
            "accuracy": {"paw": acc.tolist()},
            "temperature": {"paw": rng.uniform(0.3, 3.0, 40).tolist()},
            "thresholds": {"paw": rng.uniform(0.3, 0.7, 40).tolist()}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model_folder")
    run = make_run(str(tmp / "run"))
    storage.write_json_atomic(os.path.join(run, "results.json"), fitted_results(np.random.default_rng(0)))
    folder = str(tmp / "model")
    assert cli.main(["export", "--run-dir", run, "--format", "folder", "--out", folder]) == 0
    rng = np.random.default_rng(1)
    images = []
    for i, (h, w) in enumerate(((80, 60), (50, 90))):
        images.append(str(tmp / f"face{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images[-1])
    photo = str(tmp / "astronaut.jpg")
    astronaut().save(photo, quality=95)
    return {"run": run, "folder": folder, "images": images, "photo": photo}


def _predict(capsys, *argv) -> tuple[int, list[dict], str]:
    rc = cli.main(["predict", *argv])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


def _copy(exported, tmp_path) -> str:
    return shutil.copytree(exported["folder"], str(tmp_path / "copy"))


def _refused(folder: str, capsys, *needles: str) -> None:
    """The folder is refused by the loader and by ``predict --model``, naming each needle."""
    with pytest.raises(PawRayError) as e:
        open_model_folder(folder)
    for needle in needles:
        assert needle in str(e.value), (needle, str(e.value))
    rc, rows, err = _predict(capsys, "--model", folder, "x.png")
    assert rc == 2 and not rows and all(n in err for n in needles) and "Traceback" not in err, err


# ----------------------------------------------------------------------- same predictions

@pytest.mark.parametrize("how", ["whole image", "detector"])
def test_the_folder_predicts_the_runs_rows(exported, capsys, how):
    argv = ["--detect", "none", *exported["images"]] if how == "whole image" else [exported["photo"]]
    rc, from_run, _ = _predict(capsys, "--run-dir", exported["run"], *argv)
    assert rc == 0 and from_run
    rc, from_folder, _ = _predict(capsys, "--model", exported["folder"], *argv)
    assert rc == 0
    assert from_folder == from_run
    assert {row["decision_rule"] for row in from_folder} == {"balanced_accuracy"}, "the fitted rule travels"


def test_the_folder_reproduces_the_runs_probabilities_bit_for_bit(exported):
    by = {}
    for name, source in (("run", open_run(exported["run"])), ("folder", open_model_folder(exported["folder"]))):
        by[name] = list(Predictor(source, detect="none").predict(exported["images"]))
    assert len(by["folder"]) == len(by["run"]) == len(exported["images"])
    for a, b in zip(by["run"], by["folder"]):
        assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.decisions, b.decisions)
        assert np.array_equal(a.rule.thresholds, b.rule.thresholds)


def test_config_json_holds_what_rebuilds_and_uses_the_model(exported):
    config = json.load(open(os.path.join(exported["folder"], CONFIG_FILE)))
    run = open_run(exported["run"])
    assert config["architecture"] == vars(Architecture.of(run.cfg))
    assert config["attributes"] == list(ATTRIBUTES)
    assert config["decision"]["thresholds"] == run.results["thresholds"]["paw"], "exact, not rounded"
    assert config["decision"]["temperature"] == run.results["temperature"]["paw"]
    assert config["face_box"]["training_faces"] == "synthfaces"
    assert config["face_box"]["detection"] == FaceDetection().to_json()
    assert len(config["normalisation"]["mean"]) == len(config["normalisation"]["std"]) == 3
    assert config["parity"]["max_abs_probability_diff"] == 0 and config["parity"]["boxes_identical"]


# ----------------------------------------------------------------------- no pickle

def test_the_folder_is_three_files_and_loads_without_pickle(exported, monkeypatch):
    folder = exported["folder"]
    assert sorted(os.listdir(folder)) == sorted(FOLDER_FILES)
    for name in FOLDER_FILES:
        head = open(os.path.join(folder, name), "rb").read(4)
        assert not head.startswith(b"\x80") and head != b"PK\x03\x04", f"{name} is a pickle or a torch.save zip"
    data = open(os.path.join(folder, WEIGHTS_FILE), "rb").read()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # the safetensors layout
    assert header and all(k == "__metadata__" or set(v) == {"dtype", "shape", "data_offsets"}
                          for k, v in header.items())

    def refuse(*args, **kwargs):
        raise AssertionError("a model folder must load without torch.load or pickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, refuse)
    model = open_model_folder(folder)
    assert len(list(Predictor(model, detect="none").predict(exported["images"][:1]))) == 1


# ----------------------------------------------------------------------- refused folders

def _rewrite_weights(folder: str, change) -> None:
    path = os.path.join(folder, WEIGHTS_FILE)
    data = open(path, "rb").read()
    metadata = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__")
    tensors = safetensors.torch.load(data)
    change(tensors)
    safetensors.torch.save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("change, needles", [
    (lambda t: t.pop("paw.arl.weight"), ["missing tensor paw.arl.weight"]),
    (lambda t: t.update({"paw.arl.weights": t.pop("paw.arl.weight")}),
     ["missing tensor paw.arl.weight", "unexpected tensor paw.arl.weights"]),
    (lambda t: t.update({"paw.arl.weight": t["paw.arl.weight"][:, :39].contiguous()}),
     ["tensor paw.arl.weight has shape (40, 39), the architecture needs (40, 40)"]),
    (lambda t: t.update({"paw.arl.weight": t["paw.arl.weight"].half()}), ["tensor paw.arl.weight is torch.float16"]),
], ids=["removed", "renamed", "reshaped", "retyped"])
def test_weights_that_do_not_match_the_config_are_refused(exported, tmp_path, capsys, change, needles):
    folder = _copy(exported, tmp_path)
    _rewrite_weights(folder, change)
    _refused(folder, capsys, f"{WEIGHTS_FILE} does not match the architecture in {CONFIG_FILE}", *needles)


@pytest.mark.parametrize("key, value, needles", [
    ("maps_per_attribute", 16, ["does not match the architecture", "has shape"]),
    ("student_width", 1.0, ["does not match the architecture", "has shape"]),
    ("student", "snet2", ["does not match the architecture"]),
    ("frl_pools", 3, ["does not match the architecture"]),
    ("image_size", 64, ["not the one model.safetensors was written for", "image_size 64 in config.json, 48 in"]),
    ("part_size", 20, ["part_size 20 in config.json, 24 in"]),
    ("frl_pools", 9, ["frl.pools: must be 1 to 4"]),
    ("maps_per_attribute", "8", ["architecture.maps_per_attribute: expected int"]),
    ("frl_width", None, ["missing ['frl_width']"]),
])
def test_a_config_whose_architecture_is_not_the_weights_is_refused(exported, tmp_path, capsys, key, value, needles):
    folder = _copy(exported, tmp_path)
    path = os.path.join(folder, CONFIG_FILE)
    config = json.load(open(path))
    if value is None:
        del config["architecture"][key]
    else:
        config["architecture"][key] = value
    json.dump(config, open(path, "w"))
    _refused(folder, capsys, *needles)


@pytest.mark.parametrize("damage, needles", [
    (lambda f: os.remove(os.path.join(f, WEIGHTS_FILE)), ["no model.safetensors", "not a complete model folder"]),
    (lambda f: os.remove(os.path.join(f, CONFIG_FILE)), ["no config.json"]),
    (lambda f: shutil.rmtree(f), ["no such model folder"]),
    (lambda f: open(os.path.join(f, WEIGHTS_FILE), "r+b").truncate(100), ["not a readable safetensors file"]),
    (lambda f: open(os.path.join(f, CONFIG_FILE), "a").write("}"), ["config.json: not valid JSON"]),
], ids=["no weights", "no config", "no folder", "torn weights", "torn config"])
def test_a_missing_or_torn_file_is_named(exported, tmp_path, capsys, damage, needles):
    folder = _copy(exported, tmp_path)
    damage(folder)
    _refused(folder, capsys, folder, *needles)


def test_a_run_directory_given_as_a_model_folder_says_so(exported, capsys):
    _refused(exported["run"], capsys, "a run directory, not a model folder", "--run-dir")


# ----------------------------------------------------------------------- model card

def _front_matter(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    _, head, body = card.split("---\n", 2)
    return yaml.safe_load(head), body


def test_the_model_card_has_front_matter_and_the_measured_results(exported):
    run = open_run(exported["run"])
    meta, body = _front_matter(open(os.path.join(exported["folder"], CARD_FILE)).read())
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["SynthFaces"], "SynthFaces: the project's licence"
    assert "accuracy" in meta["metrics"] and "safetensors" in meta["tags"]
    measured = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert measured["accuracy"] == round(run.results["mean_accuracy"]["paw"], 4)
    assert f"{100 * run.results['mean_accuracy']['paw']:.2f}%" in body
    for section in ("## Data licence", "## Intended use", "## Known limits", "config.json", "predict --model"):
        assert section in body, section


def test_a_celeba_model_card_states_its_non_commercial_terms(exported):
    run = open_run(exported["run"])
    run.cfg.data.path, run.manifest.data = "/data/celeba-shards", "celeba (/data/celeba-shards)"
    meta, body = _front_matter(folder_card(run, json.load(open(os.path.join(exported["folder"], CONFIG_FILE)))))
    assert meta["license"] == "other" and "non-commercial" in meta["license_name"]
    assert meta["license_link"] == CELEBA_TERMS_URL and meta["datasets"] == ["CelebA"]
    assert "non-commercial research purposes only" in body
