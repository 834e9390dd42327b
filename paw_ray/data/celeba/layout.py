"""Where the files of a CelebA copy are: the annotation files and the image folder, in
the official tree, flat in one folder, or in the CSV edition (``docs/data-format.md``,
"CelebA editions").

Each file is looked for in a fixed order of candidate places and the first found wins;
when a required one is missing, the error lists every place looked in, and for a missing
image folder it says what was found instead (an archive to unpack, the other edition's
folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from paw_ray import storage
from paw_ray.data.annotations import CelebAError

_FILE_CANDIDATES = {
    "attr": ["Anno/list_attr_celeba.txt", "list_attr_celeba.txt", "Anno/list_attr_celeba.csv", "list_attr_celeba.csv"],
    "partition": ["Eval/list_eval_partition.txt", "list_eval_partition.txt", "Anno/list_eval_partition.txt",
                  "Eval/list_eval_partition.csv", "list_eval_partition.csv", "Anno/list_eval_partition.csv"],
    "bbox": ["Anno/list_bbox_celeba.txt", "list_bbox_celeba.txt", "Anno/list_bbox_celeba.csv", "list_bbox_celeba.csv"],
    "landmarks": ["Anno/list_landmarks_celeba.txt", "list_landmarks_celeba.txt",
                  "Anno/list_landmarks_celeba.csv", "list_landmarks_celeba.csv"],
}
_IMAGE_DIRS = {
    False: ["Img/img_celeba", "img_celeba", "Img/img_celeba/img_celeba", "img_celeba/img_celeba", "."],
    True: ["Img/img_align_celeba", "img_align_celeba", "img_align_celeba/img_align_celeba",
           "Img/img_align_celeba/img_align_celeba", "."],
}
_ARCHIVES = ("img_celeba.7z", "img_celeba.zip", "img_align_celeba.zip", "img_align_celeba.7z",
             "Img/img_celeba.7z", "Img/img_align_celeba.zip", "Img/img_celeba.7z.001", "celeba.zip")


@dataclass
class CelebAFiles:
    """Where each CelebA file of ``root`` is (``None``: not there)."""

    root: str
    aligned: bool
    attr: str
    partition: str | None
    bbox: str | None
    landmarks: str | None
    image_dirs: list[str]  # candidate image folders that exist, in order of preference

    @property
    def layout(self) -> str:
        if self.attr.lower().endswith(".csv"):
            return "csv"
        return "official" if "/Anno/" in self.attr.replace("\\", "/") else "flat"


def find_files(root: str, aligned: bool = False, *, need_partition: bool = True) -> CelebAFiles:
    """Locate CelebA's files under ``root`` (official tree, flat, or CSV edition); a
    ``CelebAError`` lists, for every required file not found, the places looked in.
    ``need_partition=False``: the partition file may be missing (a split by image id)."""
    if not storage.exists(root):
        raise CelebAError(f"{root}: CelebA folder does not exist")
    if not storage.is_dir(root):
        raise CelebAError(f"{root}: not a folder (expected CelebA's folder, with Anno/, Eval/ and Img/ or the files flat)")
    found: dict[str, str | None] = {}
    for key, rels in _FILE_CANDIDATES.items():
        found[key] = next((storage.join(root, r) for r in rels if storage.is_file(storage.join(root, r))), None)
    missing = [k for k in (("attr", "partition") if need_partition else ("attr",)) if found[k] is None]
    if not aligned and found["bbox"] is None and found["landmarks"] is None:
        missing.append("bbox or landmarks")
    dirs = [storage.join(root, d) if d != "." else root for d in _IMAGE_DIRS[aligned]]
    dirs = [d for d in dirs if storage.is_dir(d)]
    if missing:
        lines = []
        for k in missing:
            keys = ["bbox", "landmarks"] if k == "bbox or landmarks" else [k]
            rels = [r for kk in keys for r in _FILE_CANDIDATES[kk]]
            what = {"attr": "the attribute file",
                    "partition": "the partition file (without one, --split-fraction 0.8,0.1,0.1 splits by image id)",
                    "bbox or landmarks": "a face-box source (in-the-wild mode needs the boxes or the in-the-wild landmarks)"}[k]
            lines.append(f"  {what}: looked for {', '.join(rels)}")
        raise CelebAError(f"{root}: CelebA files not found:\n" + "\n".join(lines))
    return CelebAFiles(root=root, aligned=aligned, attr=found["attr"], partition=found["partition"],
                       bbox=None if aligned else found["bbox"], landmarks=None if aligned else found["landmarks"],
                       image_dirs=dirs)


def list_names(location: str) -> set[str]:
    """The names in the folder ``location`` (an empty set if it cannot be listed)."""
    if storage.is_local(location):
        try:
            return set(os.listdir(storage.local_path(location)))
        except OSError:
            return set()
    return set(storage.listdir(location))


def choose_image_dir(files: CelebAFiles, ids: list[str]) -> tuple[str, set[str]]:
    """The first candidate image folder holding any of ``ids``, with its file names."""
    sample = ids[: min(len(ids), 1000)]
    for d in files.image_dirs:
        names = list_names(d)
        if any(s in names for s in sample) or any(s in names for s in ids):
            return d, names
    mode = "aligned" if files.aligned else "in-the-wild"
    looked = [storage.join(files.root, d) if d != "." else files.root for d in _IMAGE_DIRS[files.aligned]]
    hint = ""
    archives = [a for a in _ARCHIVES if storage.is_file(storage.join(files.root, a))]
    if archives:
        hint += f"; found {', '.join(archives)}: unpack it first"
    other = [storage.join(files.root, d) for d in _IMAGE_DIRS[not files.aligned] if d != "." and storage.is_dir(storage.join(files.root, d))]
    if other:
        hint += (f"; there is an {'in-the-wild' if files.aligned else 'aligned'} image folder ({other[0]}): "
                 f"{'drop' if files.aligned else 'add'} --aligned to use it")
    raise CelebAError(f"{files.root}: no folder of {mode} CelebA images holding the images named in "
                      f"{files.attr} (looked in {', '.join(looked)}){hint}")
