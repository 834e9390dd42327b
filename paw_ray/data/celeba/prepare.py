"""``prepare_celeba``, the driver of ``paw-ray prepare-celeba``: find the files, plan the
rows, check the images are there, then one Ray Data task per chunk (``chunk_size``
images of one split) writes one shard, and ``dataset.json`` is written last.

The annotations are parsed and cross-checked in the driver (``plan.py``), so the tasks
(``images.py``) only read images from ``root``, which must be a path every node sees.
Writing is safe to repeat: a previous set's ``dataset.json`` goes first, and its shards
that were not rewritten go last.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter

import numpy as np

from paw_ray import storage
from paw_ray.data import shards
from paw_ray.data.annotations import CelebAError
from paw_ray.data.celeba.images import JPEG_QUALITY, chunk_task
from paw_ray.data.celeba.layout import CelebAFiles, choose_image_dir, find_files
from paw_ray.data.celeba.plan import SPLIT_RULE, Drops, Plan, load_annotations, split_shares
from paw_ray.data.detect import FaceDetection
from paw_ray.errors import root_message

DEFAULT_CHUNK_SIZE = 2000
FACE_SOURCES = ("annotations", "detector")  # where an in-the-wild face box comes from


def print_progress(msg: str) -> None:
    print(f"prepare-celeba: {msg}", file=sys.stderr, flush=True)


def _prepare_out(out: str) -> list[str]:
    """Make ``out`` ready for new shards; return the shard files of a previous data set
    there (removed at the end if not rewritten). ``dataset.json`` is removed *first*, so
    a half-rewritten folder never passes for a complete data set."""
    info_path = storage.join(out, shards.DATASET_INFO_FILE)
    if not storage.exists(out):
        storage.makedirs(out)
        return []
    if not storage.is_dir(out):
        raise CelebAError(f"{out}: output location exists and is not a folder")
    names = [n for n in storage.listdir(out) if not n.startswith(".")]
    if shards.DATASET_INFO_FILE not in names:
        foreign = [n for n in names if n not in shards.SPLITS]
        if foreign:
            raise CelebAError(f"{out}: output folder is not empty and is not a prepared data set "
                              f"(holds {', '.join(foreign[:5])}); choose an empty or new folder")
    old = []
    for split in shards.SPLITS:
        old += [f"{split}/{n}" for n in storage.listdir(storage.join(out, split))
                if n.startswith("shard-") and n.endswith(".parquet")]
    if storage.exists(info_path):
        storage.remove_tree(info_path)
    return old


def _chunk_specs(plan: Plan, images_dir: str, out: str, *, aligned: bool, size: int, margin: float,
                 strict: bool, chunk_size: int, face_source: str, detection: FaceDetection) -> list[dict]:
    specs = []
    files = {"attr": plan.files.attr, "bbox": plan.files.bbox, "landmarks": plan.files.landmarks}
    for split in shards.SPLITS:
        idx = np.flatnonzero(plan.splits == split)
        for c, lo in enumerate(range(0, len(idx), chunk_size)):
            rows = []
            for r in idx[lo:lo + chunk_size]:
                rows.append([
                    plan.ids[r], int(plan.attr_lines[r]), "".join("01"[v] for v in plan.labels[r]),
                    None if plan.bbox is None else [float(v) for v in plan.bbox[r]],
                    0 if plan.bbox_lines is None else int(plan.bbox_lines[r]),
                    None if plan.landmarks is None else [float(v) for v in plan.landmarks[r]],
                    0 if plan.landmark_lines is None else int(plan.landmark_lines[r]),
                ])
            specs.append({"split": split, "index": c, "out": out, "images": images_dir, "aligned": aligned,
                          "size": size, "margin": margin, "strict": strict, "files": files, "rows": rows,
                          "face_source": face_source,
                          "detection": {"min_face": detection.min_face, "threshold": detection.threshold}})
    return specs


def _out_hint(specs: list[dict]) -> str:
    return specs[0]["out"] if specs else "CelebA"


def _run_chunks(specs: list[dict], *, strict: bool, drops: Drops, total: int,
                say=print_progress) -> tuple[list[dict], Counter]:
    """Run the chunk tasks on Ray Data; one progress line per finished chunk."""
    import ray  # here, not at module top: importing Ray takes seconds, and the layout checks need none of it
    import ray.data.exceptions

    if not ray.is_initialized():
        ray.init(address="local" if not os.environ.get("RAY_ADDRESS") else None)
    ctx = ray.data.DataContext.get_current()
    old_bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # one line per chunk instead (below)
    results: list[dict] = []
    sources: Counter[str] = Counter()
    rows = None
    try:
        items = [{"spec": json.dumps(s, separators=(",", ":"))} for s in specs]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map(chunk_task, num_cpus=0.25)
        t0 = time.perf_counter()
        done = 0
        ray_errors = (ray.exceptions.RayError, ray.data.exceptions.UserCodeException,
                      ray.data.exceptions.SystemException)
        rows = iter(ds.iter_rows())
        while True:
            try:
                res = next(rows)
            except StopIteration:
                break
            except ray_errors as e:  # a worker died, ran out of memory, ...: say so in one line
                raise CelebAError(f"preparing {_out_hint(specs)} failed in a Ray task: {root_message(e)}") from e
            errors = json.loads(res["errors"])
            write_errors = [e for e in errors if e["reason"] == "shard write failed"]
            if write_errors:
                raise CelebAError(write_errors[0]["message"])
            if errors and strict:
                more = len(errors) - 1
                tail = f" ({more} more bad image{'s' if more != 1 else ''} in this chunk)" if more else ""
                raise CelebAError(errors[0]["message"] + tail +
                                  "; --allow-partial skips bad images and reports how many")
            for e in errors:
                drops.add(e["reason"], e["message"])
            sources.update(json.loads(res["sources"]))
            results.append(res)
            done += int(res["images"])
            rate = done / max(time.perf_counter() - t0, 1e-9)
            say(f"{done}/{total} images, {len(results)}/{len(specs)} shards "
                 f"({res['path'] or res['split'] + ' chunk ' + str(res['index']) + ': no rows'}), {rate:.0f} images/s"
                 + (f", {len(errors)} dropped" if errors else ""))
    finally:
        if rows is not None and hasattr(rows, "close"):
            rows.close()  # stop the execution now (strict mode stops at the first bad chunk)
        ctx.enable_progress_bars = old_bars
    return results, sources


def _check_arguments(image_size, margin, limit, chunk_size) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise CelebAError(f"image_size must be a positive integer, got {image_size!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > -0.5):
        raise CelebAError(f"margin must be a number above -0.5 (a share of the box side), got {margin!r}")
    if not isinstance(limit, int) or limit < 0:
        raise CelebAError(f"limit must be 0 (all) or a positive number of images, got {limit!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise CelebAError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _drop_missing_images(plan: Plan, images_dir: str, names: set[str], *, strict: bool) -> None:
    """Images the plan names but ``images_dir`` lacks: the first is a ``CelebAError`` in
    strict mode; with ``allow_partial`` each is dropped and counted."""
    present = np.fromiter((s in names for s in plan.ids), dtype=bool, count=len(plan.ids))
    if present.all():
        return
    missing = np.flatnonzero(~present)

    def message(r: int) -> str:
        return (f"{storage.join(images_dir, plan.ids[r])}: image file not found "
                f"(image listed at {plan.files.attr}, line {int(plan.attr_lines[r])})")

    if strict:
        more = len(missing) - 1
        raise CelebAError(message(int(missing[0])) + (f" ({more} more images missing)" if more else ""))
    for r in missing:
        plan.dropped.add("missing image", message(r))
    plan.keep_rows(present)


def _dataset_source(plan: Plan, files: CelebAFiles, images_dir: str, shares, sources: Counter, *,
                    aligned: bool, margin: float, allow_partial: bool, limit: int, face_source: str,
                    detection: FaceDetection) -> dict:
    """``DatasetInfo.source``: how the set was made."""
    return {
        "root": files.root, "aligned": aligned, "margin": float(margin), "allow_partial": allow_partial,
        "face_source": "aligned" if aligned else face_source,
        **({"detection": detection.to_json()} if face_source == "detector" and not aligned else {}),
        "limit": limit, "layout": files.layout,
        "files": {"attr": files.attr, "partition": None if shares else files.partition, "bbox": files.bbox,
                  "landmarks": files.landmarks, "images": images_dir},
        "split": ({"by": "image id", "split_fraction": dict(zip(shards.SPLITS, shares)), "rule": SPLIT_RULE}
                  if shares else {"by": "partition file"}),
        "dropped": dict(plan.dropped.counts), "dropped_total": plan.dropped.total,
        "dropped_examples": dict(plan.dropped.examples), "warnings": list(plan.warnings),
        "box_source": dict(sources),
        "crop": ("whole image squashed to a square" if aligned else
                 "face square (facebox.face_square), padded with black outside the image"),
        "resize": "lanczos", "jpeg_quality": JPEG_QUALITY,
    }


def _written_shards(results: list[dict]) -> tuple[dict[str, int], dict[str, list[str]], dict[str, dict]]:
    """Rows and shard files per split, in split and chunk order, and each file's content."""
    num_rows = {s: 0 for s in shards.SPLITS}
    out_files: dict[str, list[str]] = {s: [] for s in shards.SPLITS}
    content = {}
    for res in sorted(results, key=lambda r: (shards.SPLITS.index(r["split"]), r["index"])):
        if res["path"]:
            num_rows[res["split"]] += int(res["rows"])
            out_files[res["split"]].append(res["path"])
            content[res["path"]] = shards.WrittenShard(res["path"], int(res["bytes"]), res["sha256"]).content()
    return num_rows, out_files, content


def prepare_celeba(root: str, out: str, aligned: bool = False, allow_partial: bool = False,
                   image_size: int = 224, margin: float = 0.0, limit: int = 0, *,
                   split_fraction: str | tuple[float, ...] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   face_source: str = "annotations", detection: FaceDetection | None = None,
                   progress=None) -> shards.DatasetInfo:
    """Convert CelebA under ``root`` into shards under ``out`` (``docs/data-format.md``).

    ``aligned`` uses ``img_align_celeba`` as it is; otherwise the in-the-wild face box
    is cut (``facebox``) with ``margin``. ``allow_partial`` drops inconsistent rows and
    counts them instead of raising ``CelebAError``. ``limit`` > 0 keeps the first
    ``limit`` images of the attribute file. ``split_fraction`` (``"0.8,0.1,0.1"`` or three
    shares, see ``split_shares``) splits by image id instead of the partition file.
    ``chunk_size`` images per Ray task and shard. ``face_source`` ``"detector"`` cuts each
    in-the-wild face where the detector (``detection``, ``paw_ray.data.detect``) finds it,
    choosing the face that overlaps the annotated box most, as the paper did; an image where
    it finds none falls back to the annotated box, then to the landmarks' box. The source
    of every face is counted in ``source["box_source"]``.
    ``progress(line)`` receives the progress lines (default: printed to stderr).
    Returns the ``DatasetInfo`` written to ``out/dataset.json``."""
    say = progress or print_progress
    _check_arguments(image_size, margin, limit, chunk_size)
    if face_source not in FACE_SOURCES:
        raise CelebAError(f"face source {face_source!r}: one of {', '.join(FACE_SOURCES)}")
    detection = detection or FaceDetection()
    shares = None if split_fraction is None else split_shares(split_fraction)
    strict = not allow_partial
    # Tasks on other nodes resolve paths against their own working folder: make local ones absolute.
    root, out = storage.absolute(root), storage.absolute(out)
    t0 = time.perf_counter()
    files = find_files(root, aligned, need_partition=shares is None)
    if shares and files.partition:
        say(f"--split-fraction: splitting by image id; {files.partition} is not read")
    plan = load_annotations(files, allow_partial=allow_partial, limit=limit, split_fraction=shares)
    for w in plan.warnings:
        say(f"warning: {w}")
    if not plan.ids:
        raise CelebAError(f"{root}: no consistent images to prepare"
                          + (f" (dropped: {dict(plan.dropped.counts)})" if plan.dropped.total else ""))
    images_dir, names = choose_image_dir(files, plan.ids)
    _drop_missing_images(plan, images_dir, names, strict=strict)
    say(f"{len(plan.ids)} images to prepare from {root} ({files.layout} layout, "
        f"{'aligned' if aligned else 'in the wild'}), annotations read in {time.perf_counter() - t0:.1f} s"
        + (f", {plan.dropped.total} rows dropped so far" if plan.dropped.total else ""))

    old_shards = _prepare_out(out)
    specs = _chunk_specs(plan, images_dir, out, aligned=aligned, size=image_size, margin=float(margin),
                         strict=strict, chunk_size=chunk_size, face_source=face_source, detection=detection)
    results, sources = _run_chunks(specs, strict=strict, drops=plan.dropped, total=len(plan.ids), say=say)
    num_rows, out_files, content = _written_shards(results)
    if not any(num_rows.values()):
        raise CelebAError(f"{root}: every image was dropped ({dict(plan.dropped.counts)}); nothing written")
    source = _dataset_source(plan, files, images_dir, shares, sources, aligned=aligned, margin=margin,
                             allow_partial=allow_partial, limit=limit, face_source=face_source, detection=detection)
    info = shards.DatasetInfo(name="celeba-aligned" if aligned else "celeba", image_size=image_size,
                              num_rows=num_rows, files=out_files, source=source, content=content)
    shards.write_info(info, out)
    written = {p for fs in out_files.values() for p in fs}
    for rel in old_shards:
        if rel not in written:
            storage.remove_tree(storage.join(out, rel))
    if not aligned:
        keys = (["detector"] if face_source == "detector" else []) + [k for k in ("bbox", "landmarks") if sources[k]]
        say("face boxes from: " + ", ".join(f"{sources[k]} {k}" for k in keys))
    total = sum(num_rows.values())
    say(f"wrote {total} images ({', '.join(f'{s} {n}' for s, n in num_rows.items())}) to {out} "
        f"in {time.perf_counter() - t0:.1f} s")
    if plan.dropped.total:
        say(f"dropped {plan.dropped.total} rows: " + "; ".join(f"{n} x {k}" for k, n in plan.dropped.counts.most_common()))
    try:
        shards.check_splits(out, info)
    except shards.ShardError as e:  # written all the same: the rows are good, only train refuses them
        say(f"warning: {e}")
    return info
