"""CelebA's own files -> Parquet shards (``paw-ray prepare-celeba``), on Ray Data.

``docs/data-format.md`` describes the editions accepted, the face boxes, the checks and
what a bad input reports. The modules: ``layout`` (where a copy's annotation files and
image folder are), ``plan`` (the annotations cross-checked into the rows to prepare, and
the split by image id), ``images`` (the per-chunk image work in Ray tasks) and
``prepare`` (the driver). The names below are the public API.
"""

from paw_ray.data.annotations import CelebAError
from paw_ray.data.celeba.images import JPEG_QUALITY, MAX_IMAGE_PIXELS
from paw_ray.data.celeba.layout import CelebAFiles, find_files
from paw_ray.data.celeba.plan import SPLIT_RULE, Plan, load_annotations, split_by_id, split_shares
from paw_ray.data.celeba.prepare import DEFAULT_CHUNK_SIZE, prepare_celeba

__all__ = [
    "CelebAError",
    "CelebAFiles",
    "Plan",
    "MAX_IMAGE_PIXELS",
    "JPEG_QUALITY",
    "DEFAULT_CHUNK_SIZE",
    "SPLIT_RULE",
    "find_files",
    "split_shares",
    "split_by_id",
    "load_annotations",
    "prepare_celeba",
]
