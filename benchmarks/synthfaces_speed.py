"""SynthFaces: rendering speed in one process at 48, 96 and 224 px, and an optional
contact sheet of faces with some ground-truth cue boxes.

    python benchmarks/synthfaces_speed.py [--n 300] [--sheet /tmp/synth_sheet.png]
"""

from __future__ import annotations

import argparse
import time

from PIL import Image, ImageDraw

from paw_ray.attributes import ATTRIBUTES
from paw_ray.data.synthfaces import encode_png, render_example

SHOW = {"Eyeglasses": (0, 255, 0), "Wearing_Earrings": (255, 0, 255), "Wearing_Necklace": (0, 255, 255),
        "Smiling": (255, 255, 0), "Bangs": (255, 128, 0), "No_Beard": (0, 128, 255), "Young": (255, 0, 0)}


def contact_sheet(path: str, seed: int = 0, n: int = 16, size: int = 96, zoom: int = 3, boxes: bool = True) -> None:
    cols = 4
    rows = (n + cols - 1) // cols
    tile = size * zoom
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 14 * 3)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i in range(n):
        img, clean, _, bx = render_example(seed, i, size)
        big = img.resize((tile, tile), Image.NEAREST)
        x, y = (i % cols) * tile, (i // cols) * (tile + 42)
        sheet.paste(big, (x, y))
        if boxes:
            for name, col in SHOW.items():
                j = ATTRIBUTES.index(name)
                if clean[j] if name != "No_Beard" else not clean[j]:
                    b = bx[j] * tile
                    d.rectangle([x + b[0], y + b[1], x + b[2], y + b[3]], outline=col)
        on = [a for a, v in zip(ATTRIBUTES, clean) if v]
        text = " ".join(a[:8] for a in on)
        for r in range(3):
            d.text((x + 2, y + tile + 1 + 13 * r), text[r * 48:(r + 1) * 48], fill=(0, 0, 0))
    sheet.save(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--sheet", default="")
    ap.add_argument("--sheet-size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.sheet:
        contact_sheet(args.sheet, seed=args.seed, size=args.sheet_size)
        print("wrote", args.sheet)
    for size in (48, 96, 224):
        n = args.n if size < 200 else max(20, args.n // 4)
        render_example(0, 0, size)  # warm-up
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            img, *_ = render_example(1, i, size)
            encode_png(img)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        # CPU time is what one core spends; wall time also counts waiting for a busy machine
        print(f"size {size:3d}: render+PNG {n / cpu:7.1f} img/s of CPU time ({60 * n / cpu:6.0f} img/min on one core), "
              f"{n / wall:7.1f} img/s wall")


if __name__ == "__main__":
    main()
