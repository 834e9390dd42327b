"""Decoder choice: images/s on one core of PIL (with ``draft`` for JPEG, as
``paw_ray.data.stream`` decodes today) against ``torchvision.io.decode_image``
(libpng / libjpeg-turbo), on the bytes the shards hold.

The bytes: SynthFaces faces encoded as the shards encode them, PNG at ``compress_level=1``
(SynthFaces) and JPEG at quality 95 (``prepare-celeba``), at 96 and 224 px, already at
training size (no resize on either side). Both sides end in the same uint8 (3, S, S)
array; they are checked to give the same pixels for PNG (lossless) and to within the
IDCT's rounding for JPEG. One thread; the two sides interleave.

    python benchmarks/bench_decode.py [--quick] [--images 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch

from benchlib import machine_note, result_line, time_interleaved
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data.stream import decode_pil, decode_torchvision
from paw_ray.data.synthfaces import render_face


def encoded_faces(n: int, size: int, fmt: str) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        img, _ = render_face(rng, rng.integers(0, 2, NUM_ATTRIBUTES), size)
        buf = io.BytesIO()
        if fmt == "PNG":
            img.save(buf, format="PNG", compress_level=1)
        else:
            img.save(buf, format="JPEG", quality=95)
        out.append(buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes: a check that it works")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n, repeats = (20, 1) if args.quick else (args.images, args.repeats)
    torch.set_num_threads(1)
    print(f"[decode] {machine_note()}; {n} images per set, one thread", flush=True)
    for fmt in ("PNG", "JPEG"):
        for size in (96, 224):
            data = encoded_faces(n, size, fmt)
            a = np.stack([decode_pil(d, size) for d in data]).astype(np.int16)
            b = np.stack([decode_torchvision(d) for d in data]).astype(np.int16)
            diff = int(np.abs(a - b).max())
            if fmt == "PNG" and diff:
                raise SystemExit(f"PNG decoders disagree by {diff} at {size}px")
            t = time_interleaved({
                "pil": lambda data=data, size=size: [decode_pil(d, size) for d in data],
                "torchvision": lambda data=data: [decode_torchvision(d) for d in data],
            }, repeats=repeats)
            print(f"[decode] {fmt} {size}px ({np.mean([len(d) for d in data]) / 1024:.1f} KiB/image): "
                  f"PIL {n / t['pil']:.0f} images/s, torchvision {n / t['torchvision']:.0f} images/s "
                  f"on one core; largest pixel difference {diff}", flush=True)
            print(result_line(f"decode_torchvision_vs_pil_{fmt.lower()}_{size}", t["pil"] / t["torchvision"], 1.0))


if __name__ == "__main__":
    main()
