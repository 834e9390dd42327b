"""``paw-ray export``: the whole trained cascade (``models.cascade.Cascade``: FRL
localisation -> part centres -> crops -> PaW; with ``parts.source = grid`` the fixed
grid centres) as ONE deployable model, plus ``model.json`` (the input/output contract)
and ``MODEL_CARD.md`` beside it.

Contract: input ``images``, uint8 ``(B, 3, S, S)`` RGB face boxes (S = the run's
``data.image_size``; normalisation happens inside); outputs ``probabilities`` float32
``(B, 40)`` and ``boxes`` int64 ``(B, 40, 4)`` (x, y, w, h in input pixels). The batch
dimension is dynamic. The probabilities are calibrated by the run's decision rule
(``TrainedRun.decision_rule``: fitted by default), whose temperature is part of the graph;
its per-attribute thresholds are in ``model.json`` under ``decision``. The model takes a
face, not a photo: ``face_box`` in ``model.json`` says how the training faces were cut and
which detector ``paw-ray predict`` finds faces with, so a consumer can cut them the same way.

Formats: ``torchscript`` (``torch.jit.trace``, ``paw_cascade.torchscript.pt``) and ``onnx``
(``paw_cascade.onnx``, opset 17, PyTorch's TorchScript-based exporter: the newer
torch.export-based one needs ``onnxscript``, which this project does not depend on). The
third, ``folder`` (weights and config, no graph), is ``paw_ray.serve.model_folder``; it
shares ``model_contract`` and ``compare_outputs`` with these two.

Trust model: a TorchScript file is a *program* — ``torch.jit.load`` runs what is in it;
load only files you made or trust. An ONNX file is a graph run by onnxruntime's own
operators. paw_ray itself never loads an exported file to serve: ``predict`` and
``jobs/predict.py`` rebuild the networks from the run's weights with ``weights_only``
loading (or from a model folder's safetensors); only ``verify_export`` loads the file just
written here, to check it.

Every export is verified: the exported model and the PyTorch cascade run on the same
test faces and must agree (``PARITY_ATOL`` on probabilities, identical boxes); the
measured difference goes into ``model.json``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from typing import Callable

import numpy as np
import torch

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES
from paw_ray.data.detect import FaceDetection
from paw_ray.errors import PawRayError
from paw_ray.eval.report import sample_faces
from paw_ray.train.trained_run import fell_back, open_run
from paw_ray.serve.model_card import model_card, parameter_counts

__all__ = ["FORMATS", "PARITY_ATOL", "export_cascade", "verify_export", "compare_outputs", "run_exported",
           "deployable_cascade", "write_model", "model_contract", "random_faces"]

FORMATS = {"torchscript": "paw_cascade.torchscript.pt", "onnx": "paw_cascade.onnx"}
PARITY_ATOL = 1e-5
ONNX_OPSET = 17


def deployable_cascade(run, rule=None):
    """The run's cascade set up for export: one upsampling pass for the centres and the 40
    part subnets as one grouped pass (a small graph that suits GPUs and ONNX runtimes);
    calibrated by ``rule`` (a ``metrics.DecisionRule``) when one is given."""
    cascade = run.cascade(rule)
    cascade.one_pass = True
    cascade.paw.parts.parts_per_block = cascade.paw.parts.num_parts
    return cascade.eval()


def random_faces(image_size: int, n: int) -> torch.Tensor:
    """``n`` uint8 ``(3, S, S)`` images of random pixels, the same on every call: an example
    input that needs no data set."""
    return torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def write_model(cascade, fmt: str, path: str) -> None:
    """Write ``cascade`` (the deployable one-pass module) to ``path`` as ``fmt``."""
    example = random_faces(cascade.image_size, 2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints; shapes are checked by verify_export
        if fmt == "torchscript":
            torch.jit.trace(cascade, (example,), check_trace=False).save(path)
        else:
            torch.onnx.export(cascade, (example,), path, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["images"], output_names=["probabilities", "boxes"],
                              dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"},
                                            "boxes": {0: "batch"}})


def run_exported(path: str, fmt: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run an exported model on uint8 images -> (probabilities, boxes). Loads the file: for
    TorchScript that runs its code, so only call it on files you made (see the module docstring)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
            model = torch.jit.load(path, map_location="cpu")
        with torch.no_grad():
            probs, boxes = model(torch.from_numpy(np.ascontiguousarray(images)))
        return probs.numpy(), boxes.numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probs, boxes = session.run(["probabilities", "boxes"], {"images": np.ascontiguousarray(images)})
    return probs, boxes


def verify_export(cascade, path: str, fmt: str, images: np.ndarray) -> dict:
    """Exported vs PyTorch outputs on the same images; raises if they disagree."""
    return compare_outputs(cascade, images, *run_exported(path, fmt, images), path, PARITY_ATOL)


def compare_outputs(cascade, images: np.ndarray, probs: np.ndarray, boxes: np.ndarray, where: str,
                    tolerance: float) -> dict:
    """An exported model's ``probs`` and ``boxes`` on ``images`` against ``cascade``'s: the
    parity record, or a ``PawRayError`` naming ``where`` when they differ by more than
    ``tolerance`` or a box differs."""
    with torch.no_grad():
        ref_probs, ref_boxes = (t.numpy() for t in cascade(torch.from_numpy(images)))
    diff = float(np.abs(probs - ref_probs).max())
    same_boxes = bool(np.array_equal(boxes, ref_boxes))
    if diff > tolerance or not same_boxes:
        raise PawRayError(f"{where}: the exported model disagrees with the PyTorch cascade "
                          f"(max |dp| {diff:.2e}, boxes identical: {same_boxes})")
    return {"images": int(len(images)), "max_abs_probability_diff": diff, "boxes_identical": same_boxes,
            "tolerance": tolerance}


def _sha256(location: str) -> str:
    return hashlib.sha256(storage.read_bytes(location)).hexdigest()


def _face_box_contract(run) -> dict:
    """How to cut the input from a photo as the training faces were: the face-box rule, with
    the margin and the face source the run's data used, and the detector ``predict`` uses."""
    source, margin = run.face_cut()
    return {"rule": "paw_ray.data.facebox.face_square (docs/data-format.md, Face boxes)",
            "training_faces": source, "margin": margin, "detection": FaceDetection().to_json()}


def model_contract(run, rule, cascade) -> dict:
    """What a consumer needs beside the weights, for ``model.json`` and a model folder's
    ``config.json``: the input and outputs, the attribute order, the decision rule (exact,
    so that its decisions are ``predict``'s), the face-box rule and where the model comes from."""
    s = cascade.image_size
    return {
        "input": {"name": "images", "dtype": "uint8", "shape": ["batch", 3, s, s], "channels": "RGB",
                  "content": "a face box cut, squared and resized to the input size (paw_ray.data.facebox); "
                             "ImageNet mean/std normalisation is done inside the model"},
        "outputs": {"probabilities": {"dtype": "float32", "shape": ["batch", 40],
                                      "meaning": "sigmoid of the PaW scores over decision.temperature; "
                                                 "attribute j is present when probability > "
                                                 "decision.thresholds[j]"},
                    "boxes": {"dtype": "int64", "shape": ["batch", 40, 4],
                              "meaning": "x, y, w, h of each attribute's part window in input pixels"}},
        "attributes": list(ATTRIBUTES),
        "decision": {"rule": rule.rule, "temperature": [float(t) for t in rule.temperature],
                     "thresholds": [float(t) for t in rule.thresholds]},
        "face_box": _face_box_contract(run),
        "parts_source": run.cfg.parts.source,
        "part_size": cascade.part_size,
        "parameters": parameter_counts(cascade),
        "run_dir": run.run_dir,
        "preset": run.preset,
        "data": run.data_label,
    }


def export_cascade(run_dir: str, fmt: str, out_dir: str | None = None, decision_rule: str = "fitted",
                   log: Callable[[str], None] = print) -> dict:
    """Export the run's cascade in ``fmt`` into ``out_dir`` (default ``<run>/export``), verify
    it, write ``model.json`` and ``MODEL_CARD.md``; return what was written."""
    if fmt not in FORMATS:
        raise PawRayError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    run = open_run(run_dir)
    rule = run.decision_rule(decision_rule)
    if fell_back(decision_rule, rule):
        log(f"[export] {run_dir} holds no fitted decision rule: the export decides probability > 0.5")
    cascade = deployable_cascade(run, rule)
    out_dir = out_dir or storage.join(run_dir, "export")
    location = storage.join(out_dir, FORMATS[fmt])
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:  # write locally, verify, then store (URIs too)
        path = os.path.join(tmp, FORMATS[fmt])
        write_model(cascade, fmt, path)
        sample = sample_faces(run.data_dir(log), cascade.image_size, n=8)
        parity = verify_export(cascade, path, fmt, sample["image"][:8])
        with open(path, "rb") as f:
            storage.write_bytes_atomic(location, f.read())
    contract = {"format": fmt, "file": FORMATS[fmt], "sha256": _sha256(location),
                **model_contract(run, rule, cascade), "parity": parity,
                "onnx_opset": ONNX_OPSET if fmt == "onnx" else None}
    storage.write_json_atomic(storage.join(out_dir, "model.json"), contract)
    card = storage.join(out_dir, "MODEL_CARD.md")
    storage.write_bytes_atomic(card, model_card(run, contract).encode("utf-8"))
    log(f"[export] {fmt}: {location} ({time.time() - t0:.1f}s); parity on {parity['images']} test faces: "
        f"max |dp| {parity['max_abs_probability_diff']:.1e}, boxes identical")
    return {"model": location, "model_json": storage.join(out_dir, "model.json"), "model_card": card,
            "parity": parity}
