"""A self-contained model folder: the trained cascade as three files that need no run
directory and no pickle to load.

- ``model.safetensors``: the cascade's weights (FRL localization and PaW), tensors only;
  its header also records the architecture they were written for.
- ``config.json``: the ``Architecture`` that rebuilds the networks, the normalisation, and
  what ``model.json`` of an export holds (``export.model_contract``: input and outputs,
  attribute order, decision rule, face-box rule and detector settings).
- ``README.md``: the model card with the front matter model hubs read (``folder_card``).

``export_folder`` writes one (``paw-ray export --format folder``) and checks that it
reloads to the run's outputs. ``open_model_folder`` reads one into a ``ModelFolder``, which
gives what ``Predictor`` takes from a ``TrainedRun`` (``decision_rule``, ``cascade``,
``face_cut``, ``label``): ``paw-ray predict --model DIR``. A folder whose weights do not
match its config (a tensor missing, unexpected, or of another shape or dtype) is refused,
naming the tensors, before any weight is loaded.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from paw_ray import config as C
from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from paw_ray.data.batches import IMAGENET_MEAN, IMAGENET_STD
from paw_ray.errors import PawRayError
from paw_ray.metrics import DecisionRule
from paw_ray.models.cascade import Cascade
from paw_ray.models.frl import FRL
from paw_ray.models.paw import PaW
from paw_ray.serve.export import compare_outputs, model_contract, random_faces
from paw_ray.serve.model_card import folder_card
from paw_ray.train.manifest import MANIFEST_FILE
from paw_ray.train.trained_run import fell_back, open_run

__all__ = ["WEIGHTS_FILE", "CONFIG_FILE", "CARD_FILE", "FOLDER_FILES", "FORMAT", "FORMAT_VERSION", "Architecture",
           "ModelFolder", "folder_from", "open_model_folder", "export_folder"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
FOLDER_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
FORMAT = "folder"  # config.json's "format", as model.json's names torchscript or onnx
FORMAT_VERSION = 1
ARCHITECTURE_KEY = "paw_ray.architecture"  # in the safetensors header: the architecture of the weights
PARITY_IMAGES = 8


@dataclass(frozen=True)
class Architecture:
    """The numbers that shape the cascade's networks: the config fields that ``PaW.from_config``
    and ``FRL.from_config`` read, and the part source."""

    image_size: int  # data.image_size
    part_size: int  # data.part_size
    parts_source: str  # parts.source: "frl" (FRL heatmaps) or "grid" (fixed 4x4 grid, no FRL)
    student: str  # snet1 | snet2 | snet3: the whole subnet and the 40 part subnets
    student_width: float
    maps_per_attribute: int  # frl.maps_per_attribute, N of the FRL and the subnets
    frl_width: float  # frl.width
    frl_pools: int  # frl.pools

    @classmethod
    def of(cls, cfg: C.Config) -> "Architecture":
        return cls(cfg.data.image_size, cfg.data.part_size, cfg.parts.source, cfg.student, cfg.student_width,
                   cfg.frl.maps_per_attribute, cfg.frl.width, cfg.frl.pools)

    @classmethod
    def from_json(cls, obj, where: str) -> "Architecture":
        """Read config.json's ``architecture``: every field, of its type, and nothing else."""
        if not isinstance(obj, dict):
            raise PawRayError(f"{where}: architecture: expected a mapping, got {obj!r}")
        types = typing.get_type_hints(cls)
        missing, unknown = sorted(set(types) - set(obj)), sorted(set(obj) - set(types))
        if missing or unknown:
            raise PawRayError(f"{where}: architecture: missing {missing}, unknown {unknown}")
        values = {}
        for name, typ in types.items():
            value = obj[name]
            ok = isinstance(value, str) if typ is str else (
                isinstance(value, (int, float) if typ is float else int) and not isinstance(value, bool))
            if not ok:
                raise PawRayError(f"{where}: architecture.{name}: expected {typ.__name__}, got {value!r}")
            values[name] = typ(value)
        return cls(**values)

    def config(self) -> C.Config:
        """A config holding these numbers, checked as a training config is (``C.validate``)."""
        cfg = C.Config()
        cfg.data.image_size, cfg.data.part_size = self.image_size, self.part_size
        cfg.parts.source = self.parts_source
        cfg.student, cfg.student_width = self.student, self.student_width
        cfg.frl.maps_per_attribute, cfg.frl.width, cfg.frl.pools = self.maps_per_attribute, self.frl_width, self.frl_pools
        cfg.frl.mnl = False  # the deployed FRL has no MNL branch
        C.validate(cfg)
        return cfg

    def cascade(self) -> Cascade:
        """The cascade of this architecture, untrained, built as the run built it."""
        cfg = self.config()
        frl = FRL.from_config(cfg) if self.parts_source == "frl" else None
        return Cascade(PaW.from_config(cfg), frl, self.parts_source).eval()


def normalisation() -> dict:
    """How the cascade normalises its uint8 input (``Cascade.normalise``), for consumers."""
    return {"mean": [float(v) for v in IMAGENET_MEAN], "std": [float(v) for v in IMAGENET_STD],
            "formula": "(pixel / 255 - mean) / std per RGB channel, inside the model"}


@dataclass
class ModelFolder:
    """A model folder, opened and checked: what ``Predictor`` reads, as from a ``TrainedRun``."""

    folder: str
    config: dict  # config.json
    architecture: Architecture
    weights: dict[str, torch.Tensor]  # model.safetensors, names and shapes checked against the architecture

    @property
    def preset(self) -> str:
        return self.config.get("preset", "")

    @property
    def data_label(self) -> str:
        return self.config.get("data", "")

    def label(self) -> str:
        """One line naming the model, for figure titles."""
        return f"model {self.folder} · preset {self.preset} · data {self.data_label}"

    def decision_rule(self, which: str = "fitted") -> DecisionRule:
        """``fitted``: the rule in config.json (the fixed one when the export had no fitted
        rule); ``fixed``: T = 1, threshold 0.5."""
        if which not in C.DECISION_RULES:
            raise PawRayError(f"decision rule {which!r}: one of {', '.join(C.DECISION_RULES)}")
        decision = self.config["decision"]
        if which == "fixed" or decision["rule"] == "fixed":
            return DecisionRule.fixed()
        return DecisionRule(np.asarray(decision["temperature"], float), np.asarray(decision["thresholds"], float),
                            decision["rule"])

    def face_cut(self) -> tuple[str, float]:
        """How the training faces were cut, as ``TrainedRun.face_cut`` said at export."""
        face_box = self.config["face_box"]
        return face_box["training_faces"], float(face_box["margin"])

    def cascade(self, rule: DecisionRule | None = None) -> Cascade:
        """The trained cascade in eval mode, on CPU; calibrated by ``rule``'s temperature when given."""
        cascade = self.architecture.cascade()
        cascade.load_state_dict(self.weights)
        return cascade.calibrate(rule.temperature) if rule is not None else cascade


def _check_contract(config: dict, where: str) -> None:
    """The parts of config.json this code applies as they are: format, attribute order,
    normalisation, and a decision rule of one temperature and threshold per attribute."""
    if config.get("format") != FORMAT or not isinstance(config.get("format_version"), int):
        raise PawRayError(f"{where}: not a paw_ray model folder's config (format {config.get('format')!r}, "
                          f"expected {FORMAT!r})")
    if config["format_version"] > FORMAT_VERSION:
        raise PawRayError(f"{where}: format_version {config['format_version']} is newer than this paw_ray "
                          f"reads ({FORMAT_VERSION}); upgrade paw_ray")
    if config.get("attributes") != list(ATTRIBUTES):
        raise PawRayError(f"{where}: attributes: expected the 40 CelebA attributes in paw_ray's order")
    norm = config.get("normalisation") or {}
    if norm.get("mean") != normalisation()["mean"] or norm.get("std") != normalisation()["std"]:
        raise PawRayError(f"{where}: normalisation {norm.get('mean')}, {norm.get('std')}: paw_ray's cascade "
                          f"normalises with ImageNet's {normalisation()['mean']}, {normalisation()['std']}")
    decision, face_box = config.get("decision"), config.get("face_box")
    if not (isinstance(decision, dict) and "rule" in decision and all(
            isinstance(decision.get(k), list) and len(decision[k]) == NUM_ATTRIBUTES
            for k in ("temperature", "thresholds"))):
        raise PawRayError(f"{where}: decision: expected a rule with {NUM_ATTRIBUTES} temperatures and thresholds")
    if not (isinstance(face_box, dict) and "training_faces" in face_box and "margin" in face_box):
        raise PawRayError(f"{where}: face_box: expected the face-box rule with training_faces and margin")


def _weights_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> list[str]:
    """Each difference between the tensors the architecture needs and the file's."""
    problems = [f"missing tensor {k}" for k in expected if k not in found]
    problems += [f"unexpected tensor {k}" for k in found if k not in expected]
    for k in expected.keys() & found.keys():
        want, got = expected[k], found[k]
        if want.shape != got.shape:
            problems.append(f"tensor {k} has shape {tuple(got.shape)}, the architecture needs {tuple(want.shape)}")
        elif want.dtype != got.dtype:
            problems.append(f"tensor {k} is {got.dtype}, the architecture needs {want.dtype}")
    return problems


def _read_weights(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a safetensors file and its header's metadata."""
    try:
        tensors = safetensors.torch.load(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise PawRayError(f"{where}: not a readable safetensors file ({e})") from None
    return tensors, header.get("__metadata__") or {}


def folder_from(folder: str, config: dict, weights_data: bytes) -> ModelFolder:
    """A ``ModelFolder`` from config.json's content and model.safetensors' bytes, checked."""
    config_at, weights_at = storage.join(folder, CONFIG_FILE), storage.join(folder, WEIGHTS_FILE)
    if not isinstance(config, dict):
        raise PawRayError(f"{config_at}: expected a JSON object")
    _check_contract(config, config_at)
    architecture = Architecture.from_json(config.get("architecture"), config_at)
    try:
        expected = architecture.cascade().state_dict()
    except C.ConfigError as e:
        raise PawRayError(f"{config_at}: architecture: {e}") from None
    weights, metadata = _read_weights(weights_data, weights_at)
    problems = _weights_mismatch(expected, weights)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise PawRayError(f"{folder}: {WEIGHTS_FILE} does not match the architecture in {CONFIG_FILE}: {shown}")
    if ARCHITECTURE_KEY in metadata:  # numbers no weight's shape shows (image_size, part_size)
        written_for = json.loads(metadata[ARCHITECTURE_KEY])
        differ = [f"{k} {v!r} in {CONFIG_FILE}, {written_for.get(k)!r} in {WEIGHTS_FILE}"
                  for k, v in asdict(architecture).items() if written_for.get(k) != v]
        if differ:
            raise PawRayError(f"{folder}: {CONFIG_FILE}'s architecture is not the one {WEIGHTS_FILE} was written "
                              f"for: {', '.join(differ)}")
    return ModelFolder(folder, config, architecture, weights)


def open_model_folder(folder: str) -> ModelFolder:
    """Read and check a folder written by ``paw-ray export --format folder``."""
    config_at, weights_at = storage.join(folder, CONFIG_FILE), storage.join(folder, WEIGHTS_FILE)
    if not storage.exists(folder):
        raise PawRayError(f"{folder}: no such model folder")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not storage.exists(storage.join(folder, name))]
    if missing and storage.exists(storage.join(folder, MANIFEST_FILE)):
        raise PawRayError(f"{folder}: a run directory, not a model folder: use --run-dir, or write a model folder "
                          f"with `paw-ray export --run-dir {folder} --format folder`")
    if missing:
        raise PawRayError(f"{folder}: no {' and no '.join(missing)}: not a complete model folder (write one with "
                          "`paw-ray export --run-dir RUN --format folder --out DIR`)")
    try:
        config = storage.read_json(config_at)
    except ValueError as e:
        raise PawRayError(str(e)) from None
    return folder_from(folder, config, storage.read_bytes(weights_at))


def export_folder(run_dir: str, out_dir: str | None = None, decision_rule: str = "fitted",
                  log: Callable[[str], None] = print) -> dict:
    """Write the run's cascade as a model folder into ``out_dir`` (default ``<run>/export/model``):
    the weights, config.json and README.md. Before anything is written, the folder's content
    is read back as ``open_model_folder`` reads it and must give the run's outputs exactly."""
    run = open_run(run_dir)
    rule = run.decision_rule(decision_rule)
    if fell_back(decision_rule, rule):
        log(f"[export] {run_dir} holds no fitted decision rule: the model folder decides probability > 0.5")
    cascade = run.cascade(rule)
    architecture = Architecture.of(run.cfg)
    weights = safetensors.torch.save(cascade.state_dict(),
                                     metadata={ARCHITECTURE_KEY: json.dumps(asdict(architecture))})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "file": WEIGHTS_FILE,
              "sha256": hashlib.sha256(weights).hexdigest(), "architecture": asdict(architecture),
              "normalisation": normalisation(), **model_contract(run, rule, cascade)}
    out_dir = out_dir or storage.join(run_dir, "export", "model")
    reloaded = folder_from(out_dir, json.loads(json.dumps(config)), weights)
    images = random_faces(cascade.image_size, PARITY_IMAGES).numpy()
    with torch.no_grad():
        probs, boxes = (t.numpy() for t in reloaded.cascade(reloaded.decision_rule())(torch.from_numpy(images)))
    config["parity"] = compare_outputs(cascade, images, probs, boxes, out_dir, tolerance=0.0)
    storage.write_bytes_atomic(storage.join(out_dir, WEIGHTS_FILE), weights)
    storage.write_json_atomic(storage.join(out_dir, CONFIG_FILE), config)
    storage.write_bytes_atomic(storage.join(out_dir, CARD_FILE), folder_card(run, config).encode("utf-8"))
    log(f"[export] folder: {out_dir} ({', '.join(FOLDER_FILES)}); reloaded, it gives the run's outputs on "
        f"{PARITY_IMAGES} images")
    return {"model": out_dir, **{name: storage.join(out_dir, name) for name in FOLDER_FILES},
            "parity": config["parity"]}
