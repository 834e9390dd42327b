"""``paw-ray serve`` with request batching (``@serve.batch``, up to ``--batch`` requests per
forward pass) against the same application with batches of one, side by side on one local
Ray: throughput, and p50/p99 latency at a fixed client concurrency.

Both applications run at once (one replica each, one CPU each, the cascade of an untrained
run of ``--preset``: the weights do not change the arithmetic), each under its own route;
the client sends the same face (a SynthFaces render, JPEG, ``detect=none``) from
``--concurrency`` threads, the two sides in alternating rounds of ``--requests`` each.

    python benchmarks/bench_serve.py [--quick] [--preset demo] [--requests 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from benchlib import machine_note, result_line, start_ray
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data.synthfaces import render_face

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from fake_run import make_run  # noqa: E402  (a run directory with untrained weights, made in a second)


def face_jpeg(size: int = 128) -> bytes:
    img, _ = render_face(np.random.default_rng(0), np.ones(NUM_ATTRIBUTES, dtype=int), size)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(url: str, data: bytes, n: int, concurrency: int) -> tuple[float, list[float], list[int]]:
    """``n`` requests from ``concurrency`` threads: (seconds in all, each one's latency, batch sizes)."""
    def one(_):
        t = time.perf_counter()
        answer = requests.post(f"{url}/predict", data=data, params={"detect": "none"}, timeout=120)
        if answer.status_code != 200:
            raise SystemExit(f"{url}: {answer.status_code} {answer.text[:200]}")
        return time.perf_counter() - t, int(answer.headers["X-Batch-Size"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        out = list(pool.map(one, range(n), timeout=600))
    return time.perf_counter() - t0, [lat for lat, _ in out], [b for _, b in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes: a check that it works")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--requests", type=int, default=200, help="requests per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16, help="max_batch_size of the batched side")
    args = ap.parse_args()
    preset, n, rounds, concurrency = ("smoke", 24, 1, 8) if args.quick else (
        args.preset, args.requests, args.rounds, args.concurrency)
    from ray import serve

    from paw_ray.serve import http

    start_ray(num_cpus=2)
    print(f"[serve] {machine_note()}; preset {preset}, {n} requests per round, {rounds} round(s), "
          f"{concurrency} client threads", flush=True)
    data = face_jpeg()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = make_run(os.path.join(tmp, "run"), preset)
            port = free_port()
            urls = {side: http.start({"run_dir": run, "max_batch_size": size, "batch_wait_timeout_s": 0.01,
                                      "num_cpus": 1}, "127.0.0.1", port, name=side, route_prefix=f"/{side}")
                    for side, size in (("batched", args.batch), ("single", 1))}
            for url in urls.values():
                load(url, data, concurrency, concurrency)  # warm-up: threads, connections, first forward
            rates = {side: [] for side in urls}
            latencies = {side: [] for side in urls}
            sizes = {side: [] for side in urls}
            for _ in range(rounds):
                for side, url in urls.items():
                    seconds, lat, batch = load(url, data, n, concurrency)
                    rates[side].append(n / seconds)
                    latencies[side] += lat
                    sizes[side] += batch
            for side in urls:
                p50, p99 = np.percentile(latencies[side], [50, 99]) * 1000
                print(f"[serve] {side}: {statistics.median(rates[side]):.1f} requests/s, latency p50 {p50:.0f} ms, "
                      f"p99 {p99:.0f} ms at {concurrency} concurrent; mean batch {np.mean(sizes[side]):.1f} "
                      f"requests", flush=True)
    finally:
        serve.shutdown()
    ratio = statistics.median(rates["batched"]) / statistics.median(rates["single"])
    print(result_line("serve_batched_vs_single", ratio, 2.0))


if __name__ == "__main__":
    main()
