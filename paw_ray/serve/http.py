"""``paw-ray serve``: the trained cascade as a Ray Serve application answering HTTP.

Routes (``route_prefix`` ``/``):

- ``POST /predict``: one image, as the raw request body or a multipart upload (the field
  ``image``, else the first file). Query: ``detect`` (``auto``, the default: every face the
  detector finds; ``none``: the whole image is the face, for an image already cut to one)
  and ``name`` (what the rows' ``input`` says; default the upload's file name, else
  ``upload``). Answer: ``{"model": ..., "faces": [...]}``, each face the row ``paw-ray predict``
  writes for it (``Prediction.to_json``: its box, the 40 calibrated probabilities and
  decisions, the part boxes) and ``model`` what identifies the model (``model_identity``).
  The header ``X-Batch-Size`` says how many requests the replica's forward pass held.
- ``GET /healthz`` (the replica is up), ``GET /readyz`` (its model is loaded: Serve routes to a
  replica only once its constructor, which loads the model, has returned) and ``GET /stats``
  (how many batches of each size the replica ran).

Faces are found and cut by ``Predictor.faces_in``, and the network runs in
``Predictor.predict_faces`` over the faces of a whole batch of requests (``@serve.batch``),
so a request's rows are ``paw-ray predict``'s for the same image. An input the service cannot
predict is a 4xx naming the problem (``STATUS``), and the replica goes on.
``build_app`` is also an application builder for ``serve run paw_ray.serve.http:build_app
run_dir=RUN`` (or ``model=DIR``), so a KubeRay RayService can import it.
"""

# no ``from __future__ import annotations``: FastAPI reads the routes' parameter types (a
# ``Request``) from their annotations, which Serve's ingress leaves unresolved as strings
import asyncio
import collections
import dataclasses
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import ray
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from starlette.datastructures import UploadFile

from paw_ray import __version__
from paw_ray.config import RayConfig
from paw_ray.data.detect import DETECT_MODES, FaceDetection
from paw_ray.errors import PawRayError
from paw_ray.serve.model_folder import ModelFolder, open_model_folder
from paw_ray.serve.predict import Face, InputError, Predictor, open_image
from paw_ray.train.cluster import ensure_ray
from paw_ray.train.resources import given_device, threads_for
from paw_ray.train.trained_run import open_run

__all__ = ["ServeConfig", "ModelSpec", "STATUS", "model_identity", "build_app", "run_service"]

APP_NAME = "paw_ray"
# the HTTP status of each problem an input can have (``InputError.problem``, and the service's own)
STATUS = {"empty body": 400, "bad request": 400, "does not decode": 400, "too large": 413,
          "not an image": 415, "no face": 422, "unusable face box": 422, "missing": 400}


@dataclass(frozen=True)
class ServeConfig:
    """How the service batches, what it accepts and where its replicas run."""

    max_batch_size: int = 8  # requests in one forward pass at most
    batch_wait_timeout_s: float = 0.01  # how long a batch waits for more requests once one arrived
    max_request_bytes: int = 20 * 2**20  # a bigger body is refused (413) before it is read whole
    num_replicas: int = 1
    num_cpus: float = 1.0  # per replica; torch runs this many threads
    num_gpus: float = 0.0  # per replica; > 0 runs the cascade on the replica's GPU

    def __post_init__(self):
        if self.max_batch_size < 1 or self.batch_wait_timeout_s < 0 or self.max_request_bytes < 1:
            raise PawRayError(f"serve: max_batch_size >= 1, batch_wait_timeout_s >= 0 and max_request_bytes >= 1, "
                              f"got {self.max_batch_size}, {self.batch_wait_timeout_s}, {self.max_request_bytes}")
        if self.num_replicas < 1 or self.num_cpus < 0 or self.num_gpus < 0:
            raise PawRayError(f"serve: num_replicas >= 1, num_cpus and num_gpus >= 0, got {self.num_replicas}, "
                              f"{self.num_cpus}, {self.num_gpus}")


@dataclass(frozen=True)
class ModelSpec:
    """Which model the replicas load (a run directory or a model folder) and how ``Predictor``
    finds and decides, as ``paw-ray predict``'s options say."""

    run_dir: str = ""
    model: str = ""
    decision_rule: str = "fitted"
    min_face: int = FaceDetection().min_face
    detect_threshold: float = FaceDetection().threshold
    face_margin: float | None = None

    def __post_init__(self):
        if bool(self.run_dir) == bool(self.model):
            raise PawRayError("serve: give a run directory (run_dir) or a model folder (model), one of them")

    def open(self):
        """The ``TrainedRun`` or ``ModelFolder``."""
        return open_model_folder(self.model) if self.model else open_run(self.run_dir)

    def predictor(self, device: str = "cpu") -> Predictor:
        try:
            detection = FaceDetection(min_face=self.min_face, threshold=self.detect_threshold)
        except ValueError as e:
            raise PawRayError(f"serve: min_face / detect_threshold: {e}") from None
        return Predictor(self.open(), decision_rule=self.decision_rule, detect="auto", detection=detection,
                         face_margin=self.face_margin, device=device)


def model_identity(run, rule) -> dict:
    """What names the served model: where it comes from and its fingerprint (a model
    folder's weights' SHA-256; a run's fine-tuned stage fingerprint, which covers every
    stage it was trained from), its decision rule and the paw_ray version serving it."""
    if isinstance(run, ModelFolder):
        kind, location, fingerprint = "model folder", run.folder, f"sha256:{run.config.get('sha256', '')}"
    else:
        record = run.manifest.stages.get("finetune")
        kind, location, fingerprint = "run", run.run_dir, f"finetune:{record.fingerprint if record else ''}"
    return {"source": kind, "location": location, "fingerprint": fingerprint, "preset": run.preset,
            "data": run.data_label, "decision_rule": rule.rule, "paw_ray_version": __version__}


class Rejected(Exception):
    """A request answered with a 4xx: its problem (a key of ``STATUS``) and a message."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


def _problem(problem: str, message: str) -> JSONResponse:
    return JSONResponse({"error": problem, "detail": message}, status_code=STATUS[problem])


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected("too large", f"request body of {int(declared)} bytes: the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected("too large", f"request body over {limit} bytes: the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_bytes(request: Request, body: bytes) -> tuple[bytes, str]:
    """The image's bytes and file name: the body itself, or a multipart upload's file."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body, ""

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception as e:  # starlette's parser raises its own types for a torn form
        raise Rejected("bad request", f"multipart body does not parse ({e})") from None
    files = [v for k, v in form.multi_items() if isinstance(v, UploadFile)]
    files.sort(key=lambda f: f is not form.get("image"))
    if not files:
        raise Rejected("bad request", "multipart body holds no file: upload the image as the field 'image'")
    return await files[0].read(), files[0].filename or ""


api = FastAPI(title="paw_ray", description="PaW face attributes: POST an image to /predict")


@serve.deployment(name="PawPredictor")
@serve.ingress(api)
class PawService:
    """One replica: the model loaded once, requests' faces batched into one forward pass."""

    def __init__(self, spec: ModelSpec, config: ServeConfig):
        torch.set_num_threads(threads_for(config.num_cpus))
        self.config = config
        self.predictor = spec.predictor(str(given_device(config.num_gpus)))
        self.identity = model_identity(self.predictor.run, self.predictor.rule)
        # faces are found one image at a time (dlib's detector, Predictor's per-input lists),
        # beside the batch's forward pass, off the event loop
        self.cutter = ThreadPoolExecutor(1, thread_name_prefix="paw-faces")
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._predict_batch.set_max_batch_size(config.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(config.batch_wait_timeout_s)

    def _faces(self, data: bytes, name: str, detect: str) -> list[Face]:
        try:
            return self.predictor.faces_in(open_image(name, data), name, detect)
        finally:  # the predictor's per-input notes would grow with every request
            self.predictor.detected.clear()
            self.predictor.whole_image.clear()

    @serve.batch(max_batch_size=ServeConfig.max_batch_size, batch_wait_timeout_s=ServeConfig.batch_wait_timeout_s)
    async def _predict_batch(self, requests: list[list[Face]]) -> list[tuple[list[dict], int]]:
        faces = [f for r in requests for f in r]
        preds = await asyncio.to_thread(self.predictor.predict_faces, faces)
        self.batch_sizes[len(requests)] += 1
        out, start = [], 0
        for r in requests:
            out.append(([p.to_json() for p in preds[start:start + len(r)]], len(requests)))
            start += len(r)
        return out

    @api.post("/predict")
    async def predict(self, request: Request, detect: str = "auto", name: str = ""):
        try:
            if detect not in DETECT_MODES:
                raise Rejected("bad request", f"detect={detect!r}: one of {', '.join(DETECT_MODES)}")
            body = await _read_body(request, self.config.max_request_bytes)
            data, filename = await _image_bytes(request, body)
            if not data:
                raise Rejected("empty body", "no image in the request: POST its bytes, or upload it as 'image'")
            name = name or filename or "upload"
            loop = asyncio.get_running_loop()
            faces = await loop.run_in_executor(self.cutter, self._faces, data, name, detect)
        except Rejected as e:
            return _problem(e.problem, str(e))
        except InputError as e:
            return _problem(e.problem, str(e))
        except PawRayError as e:
            return _problem("bad request", str(e))
        rows, batch_size = await self._predict_batch(faces)
        return JSONResponse({"model": self.identity, "faces": rows}, headers={"X-Batch-Size": str(batch_size)})

    @api.get("/healthz")
    def healthz(self):
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz(self):
        return {"status": "ready", "model": self.identity}

    @api.get("/stats")
    def stats(self):
        return {"batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "requests": sum(k * v for k, v in self.batch_sizes.items()),
                "max_batch_size": self.config.max_batch_size}


def _typed(cls, args: dict) -> dict:
    """``args`` (strings from ``serve run``, or values) as ``cls``'s fields' types, keeping only ``cls``'s
    fields (``build_app`` has refused any key that is no field of either class)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in args.items():
        if key not in hints:
            continue
        typ = hints[key]
        if isinstance(value, str) and typ is not str:
            try:
                value = None if value.lower() in ("", "none") and "None" in str(typ) else (
                    int(value) if typ is int else float(value))
            except ValueError:
                raise PawRayError(f"serve: {key}={value!r}: expected a number") from None
        out[key] = value
    return out


def build_app(args: dict):
    """The Serve application from flat arguments: ``ModelSpec``'s and ``ServeConfig``'s fields
    (``serve run paw_ray.serve.http:build_app run_dir=RUN max_batch_size=16``). The model is
    opened here first, so that a bad one is named at once rather than in a failing replica."""
    known = {f.name for cls in (ModelSpec, ServeConfig) for f in dataclasses.fields(cls)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise PawRayError(f"serve: unknown argument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    spec, config = ModelSpec(**_typed(ModelSpec, args)), ServeConfig(**_typed(ServeConfig, args))
    spec.open()
    return PawService.options(
        num_replicas=config.num_replicas,
        max_ongoing_requests=max(2 * config.max_batch_size, 8),  # Serve needs it >= the batch size
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
    ).bind(spec, config)


def start(args: dict, host: str = "127.0.0.1", port: int = 8000, name: str = APP_NAME, route_prefix: str = "/") -> str:
    """Serve's HTTP proxy on ``host:port`` and the application deployed as ``name`` under
    ``route_prefix`` (returns once its replicas are up): its base URL. Ray must be connected."""
    app = build_app(args)
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=name, route_prefix=route_prefix)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}"


def run_service(args: dict, host: str, port: int, address: str = "", log: Callable[[str], None] = print) -> None:
    """``paw-ray serve``: start or join Ray, deploy, answer until Ctrl-C, then shut Serve down."""
    ensure_ray(RayConfig(address=address))
    try:
        url = start(args, host, port)
        log(f"paw-ray serve: {url}/predict answers (POST an image); health {url}/healthz, ready {url}/readyz. "
            "Ctrl-C stops it.")
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()
