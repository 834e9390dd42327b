"""Stage ``localize``: every image's 40 part centres, from the trained FRL.

A streaming Ray Data pass over all splits with an actor pool that holds the FRL
(``map_batches(FRLLocalizer, compute=ActorPoolStrategy(size=...), num_gpus=...)``):
each actor loads the weights once and turns batches of images into class activation
heatmaps and their argmax centres (paper §3.2). The centres (normalised x, y) are
written, keyed by ``image_id``, to ``<run-dir>/stages/localize/centres.parquet``
beside the other stage artifacts — they belong to this run's FRL, not to the shards.

With ``parts.source = grid`` the centres are the fixed 4x4-grid block centres of the
paper's crude baseline, identical for every image, and the FRL is not consulted.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from paw_ray import config as C
from paw_ray import storage
from paw_ray.config import to_dict
from paw_ray.data import shards
from paw_ray.data.batches import model_batch
from paw_ray.data.stream import CentresTable, RowDecoder, image_stream
from paw_ray.models.windows import grid_centres, part_centres
from paw_ray.train.resources import given_device, threads_for
from paw_ray.train.stage_table import StageRun
from paw_ray.train.stages.frl import load_frl

__all__ = ["run_stage", "run_localize", "load_centres", "FRLLocalizer", "CENTRES_FILE"]

CENTRES_FILE = "centres.parquet"


class FRLLocalizer:
    """Ray Data actor: images -> 40 part centres per image, with the FRL loaded once."""

    def __init__(self, cfg_dict: dict, frl_location: str, cpus: float = 1.0):
        torch.set_num_threads(threads_for(cpus))
        self.cfg = C.from_dict(cfg_dict)
        self.device = given_device()
        self.model = load_frl(self.cfg, frl_location).to(self.device).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["ok"]
        centres = np.full((len(ok), 40, 2), 0.5, dtype=np.float32)  # undecodable rows: image centre
        if ok.any():
            b = model_batch(batch, self.device)
            with torch.no_grad():
                heat = self.model.heatmaps(b["image"])
                centres[ok] = part_centres(heat, self.cfg.data.image_size).float().cpu().numpy()
        return {"image_id": batch["image_id"], "centres": centres.reshape(len(ok), 80)}


def _grid_table(data_dir: str) -> CentresTable:
    info = shards.read_info(data_dir)
    ids = []
    for split in shards.SPLITS:
        for f in shards.shard_files(data_dir, info, split):
            fs, path = storage.resolve(f)
            ids.extend(pq.read_table(path, columns=["image_id"], filesystem=fs).column("image_id").to_pylist())
    grid = grid_centres(1, torch.device("cpu"))[0].numpy()
    return CentresTable.from_arrays(ids, np.broadcast_to(grid, (len(ids), 40, 2)))


def run_stage(run: StageRun) -> tuple[str, dict]:
    """The runner's entry (``stage_table``): the centres of ``run``'s data."""
    return run_localize(run.cfg, run.data_dir, run.run_dir, run.inputs.get("frl"))


def run_localize(cfg, data_dir: str, run_dir: str, frl_location: str | None) -> tuple[str, dict]:
    """Compute and write the centres table; return its location and metrics."""
    import ray.data

    t0 = time.time()
    if cfg.parts.source == "grid":
        table = _grid_table(data_dir)
    else:

        lc = cfg.localize
        streams = [image_stream(data_dir, split, RowDecoder(cfg.data.image_size), op_cpus=cfg.data.op_cpus)
                   for split in shards.SPLITS]
        ds = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
        cpus = 1.0 if lc.gpus_per_actor == 0 else 0.5
        ds = ds.map_batches(
            FRLLocalizer,
            fn_constructor_kwargs={"cfg_dict": to_dict(cfg), "frl_location": frl_location,
                                   "cpus": cpus},
            compute=ray.data.ActorPoolStrategy(size=lc.num_actors),
            num_gpus=lc.gpus_per_actor,
            num_cpus=cpus,
            batch_size=lc.batch_size,
            batch_format="numpy",
        )
        ids, centres = [], []
        for batch in ds.iter_batches(batch_size=4096, batch_format="numpy"):
            ids.append(batch["image_id"])
            centres.append(batch["centres"])
        table = CentresTable.from_arrays(np.concatenate(ids), np.concatenate(centres))
    location = storage.join(run_dir, "stages", "localize", CENTRES_FILE)
    out = pa.table({"image_id": pa.array(table.ids.tolist(), pa.string()),
                    "centres": pa.array(list(table.centres.reshape(len(table.ids), 80)),
                                        pa.list_(pa.float32()))})
    buf = io.BytesIO()
    pq.write_table(out, buf)
    storage.write_bytes_atomic(location, buf.getvalue())
    elapsed = time.time() - t0
    return location, {"images": int(len(table.ids)), "source": cfg.parts.source,
                      "images_per_s": round(len(table.ids) / max(elapsed, 1e-9), 1)}


def load_centres(location: str) -> CentresTable:
    """The centres table written by ``run_localize``."""
    fs, path = storage.resolve(location)
    t = pq.read_table(path, filesystem=fs)
    centres = np.stack(t.column("centres").to_numpy(zero_copy_only=False)).astype(np.float32)
    return CentresTable.from_arrays(t.column("image_id").to_pylist(), centres.reshape(-1, 40, 2))
