"""``paw-ray serve``: a real Ray Serve instance on 127.0.0.1, started once for the module on a
run with untrained weights, answering real HTTP requests: the rows ``paw-ray predict`` writes
for the same image, a 4xx naming each bad input (the replica answering afterwards), and
concurrent requests batched into one forward pass."""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from paw_ray import cli
from fake_run import make_run
from photos import ASTRONAUT_FACE_CENTRE, astronaut, no_face

MAX_BYTES = 1_000_000
TIMEOUT = 60  # seconds one request may take at most


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpeg(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` and holds almost nothing: what a
    decompression bomb looks like to the decoder before it decodes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def service(tmp_path_factory, ray_local):
    from ray import serve

    from paw_ray.serve import http

    tmp = tmp_path_factory.mktemp("serve")
    run = make_run(str(tmp / "run"))
    x, y = ASTRONAUT_FACE_CENTRE
    paths = {"astronaut": str(tmp / "astronaut.jpg"), "crop": str(tmp / "crop.jpg"), "run": run}
    astronaut().save(paths["astronaut"], quality=95)
    astronaut().crop((x - 70, y - 80, x + 70, y + 60)).save(paths["crop"], quality=95)
    port = _free_port()
    url = http.start({"run_dir": run, "max_batch_size": 4, "batch_wait_timeout_s": 0.05,
                      "max_request_bytes": MAX_BYTES}, "127.0.0.1", port)
    assert url == f"http://127.0.0.1:{port}"
    yield url, paths
    serve.shutdown()


def _predict_rows(capsys, *argv) -> list[dict]:
    assert cli.main(["predict", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _post(url: str, data: bytes, **params) -> requests.Response:
    return requests.post(f"{url}/predict", data=data, params=params, timeout=TIMEOUT,
                         headers={"Content-Type": "application/octet-stream"})


def test_health_and_readiness_name_the_model(service):
    url, paths = service
    assert requests.get(f"{url}/healthz", timeout=TIMEOUT).json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz", timeout=TIMEOUT).json()
    assert ready["status"] == "ready"
    assert ready["model"]["source"] == "run" and ready["model"]["location"] == paths["run"]
    assert ready["model"]["fingerprint"] == "finetune:fake-finetune"  # tests/fake_run.py's stage record


def test_a_photo_gets_predicts_rows_raw_or_uploaded(service, capsys):
    url, paths = service
    expected = _predict_rows(capsys, "--run-dir", paths["run"], paths["astronaut"])
    data = open(paths["astronaut"], "rb").read()
    raw = _post(url, data, name=paths["astronaut"])
    assert raw.status_code == 200, raw.text
    assert raw.json()["faces"] == expected and len(expected) == 1
    assert raw.json()["model"]["fingerprint"] == "finetune:fake-finetune"
    assert raw.headers["X-Batch-Size"] == "1"
    upload = requests.post(f"{url}/predict", files={"image": ("astronaut.jpg", data, "image/jpeg")},
                           timeout=TIMEOUT)
    assert upload.status_code == 200, upload.text
    rows = upload.json()["faces"]
    assert [r["input"] for r in rows] == ["astronaut.jpg"], "named by the upload's file name"
    assert [{**r, "input": paths["astronaut"], "image_id": "astronaut.jpg"} for r in rows] == expected


def test_a_face_crop_with_detect_none_is_predicts_detect_none(service, capsys):
    url, paths = service
    expected = _predict_rows(capsys, "--run-dir", paths["run"], "--detect", "none", paths["crop"])
    answer = _post(url, open(paths["crop"], "rb").read(), name=paths["crop"], detect="none")
    assert answer.status_code == 200, answer.text
    assert answer.json()["faces"] == expected
    assert expected[0]["face_box_source"] == "whole image"


BAD_INPUTS = {
    "empty body": (b"", {}, 400, "empty body", "no image in the request"),
    "not an image": (b"hello, not a picture", {}, 415, "not an image", "not an image"),
    "too many bytes": (b"\xff" * (MAX_BYTES + 1), {}, 413, "too large", f"the limit is {MAX_BYTES}"),
    "decompression bomb": (_png_header_only(20_000, 20_000), {}, 413, "too large", "too large to decode safely"),
    "no face": (_jpeg(no_face()), {}, 422, "no face", "no face found"),
    "torn image": (_jpeg(astronaut())[:3000], {}, 400, "does not decode", "does not decode"),
    "unknown detect mode": (b"x", {"detect": "maybe"}, 400, "bad request", "detect='maybe'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_4xx_naming_it_and_the_replica_goes_on(service, case):
    url, paths = service
    data, params, status, problem, words = BAD_INPUTS[case]
    answer = _post(url, data, **params)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == problem and words in answer.json()["detail"], answer.json()
    after = _post(url, open(paths["crop"], "rb").read(), detect="none")
    assert after.status_code == 200 and len(after.json()["faces"]) == 1


def test_a_multipart_body_without_a_file_is_a_400(service):
    url, _ = service
    answer = requests.post(f"{url}/predict", files={"image": (None, "not a file")}, timeout=TIMEOUT)
    assert answer.status_code == 400 and "holds no file" in answer.json()["detail"]


def test_concurrent_requests_all_answer_and_are_batched(service):
    """A fixed number of requests over a few threads, each with a timeout, and a deadline
    for all: every answer is the same face's row, and some forward pass held several."""
    url, paths = service
    data = open(paths["crop"], "rb").read()
    requests_total, threads, deadline = 24, 6, time.monotonic() + 120

    def one(_):
        assert time.monotonic() < deadline, "the client loop ran past its deadline"
        answer = _post(url, data, detect="none")
        return answer.status_code, answer.json()["faces"], int(answer.headers.get("X-Batch-Size", 0))

    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(one, range(requests_total), timeout=150))
    assert [status for status, _, _ in answers] == [200] * requests_total
    probabilities = np.array([list(faces[0]["probabilities"].values()) for _, faces, _ in answers])
    assert np.abs(probabilities - probabilities[0]).max() < 1e-4, "each answer is the face's, whatever its batch"
    assert max(size for _, _, size in answers) > 1, "no request shared a forward pass"
    stats = requests.get(f"{url}/stats", timeout=TIMEOUT).json()
    assert stats["max_batch_size"] == 4 and max(int(k) for k in stats["batch_sizes"]) > 1
    assert max(int(k) for k in stats["batch_sizes"]) <= 4
