"""Job entrypoint: batch inference of a trained cascade with Ray Data, written as Parquet
predictions: over a prepared data set's shards (``paw_ray.serve.batch.predict_shards``) or
over folders of raw photos, whose faces are found as ``paw-ray predict`` finds them
(``--photos``, ``paw_ray.serve.batch.predict_photos``).

    ray job submit --working-dir . -- \\
        python jobs/predict.py --run-dir s3://BUCKET/paw_ray/runs/paper \\
        --data s3://BUCKET/paw_ray/celeba --out s3://BUCKET/paw_ray/predictions/paper
    ray job submit --working-dir . -- \\
        python jobs/predict.py --run-dir s3://BUCKET/paw_ray/runs/paper \\
        --photos s3://BUCKET/photos/ --out s3://BUCKET/paw_ray/predictions/photos

Shards: one output row per input row: ``image_id``, ``ok``, ``p_<attribute>`` (40
probabilities), ``<attribute>`` (40 decisions under ``--decision-rule``), ``box_<attribute>``
(40 part boxes x, y, w, h in the stored image's pixels). Photos: one row per face found,
with ``input``, ``face_index``, ``face_box``, ``detection_score`` and ``error`` (a photo with
no face, or that does not decode, is one row with ``ok`` false). Prints the throughput at the
end. On a cluster, every location must name storage every node reaches (a bucket URI or a
shared mount).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# `ray job submit --working-dir .` uploads the repository: paw_ray/ is importable from it
# even where the package is not installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    from paw_ray.cli import add_detection_args, detection_from_args
    from paw_ray.config import DECISION_RULES

    p = argparse.ArgumentParser(prog="python jobs/predict.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True, help="a finished run directory (local path or URI)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--data", help="prepared shards (default: the run's own data set)")
    what.add_argument("--photos", nargs="+", metavar="PATH",
                      help="photo files or folders of them, instead of shards: a row per face found")
    p.add_argument("--out", required=True, help="output folder for the Parquet predictions")
    p.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                   help="shard rows to predict (default: all)")
    p.add_argument("--actors", type=int, default=0,
                   help="model replicas in the actor pool (default: one per GPU, else one per CPU but one)")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="GPUs per actor, fractional allowed (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per model call (default: 256 stored faces, 32 photos)")
    p.add_argument("--op-cpus", type=float, default=None,
                   help="CPUs per read/decode task (default: the run's data.op_cpus)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
    p.add_argument("--decision-rule", default="fitted", choices=DECISION_RULES,
                   help="fitted: the run's per-attribute temperature and threshold (default); fixed: p > 0.5")
    p.add_argument("--detect", default="auto", choices=["auto", "none"],
                   help="photos: auto finds the faces (default); none takes each photo whole as the face")
    add_detection_args(p)
    p.add_argument("--face-margin", type=float, metavar="M",
                   help="photos: face-box margin of a detected face (default: the run's training margin)")
    p.add_argument("--address", default="", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    args = p.parse_args(argv)

    from paw_ray.config import RayConfig
    from paw_ray.errors import PawRayError
    from paw_ray.serve.batch import predict_photos, predict_shards
    from paw_ray.train.cluster import ensure_ray

    try:
        detection = detection_from_args(args)
        ensure_ray(RayConfig(address=args.address))

        def log(message: str) -> None:
            print(message, file=sys.stderr)

        if args.photos:
            summary = predict_photos(args.run_dir, args.photos, args.out, num_actors=args.actors,
                                     gpus_per_actor=args.gpus_per_actor, batch_size=args.batch_size or 32,
                                     overwrite=args.overwrite, decision_rule=args.decision_rule, detect=args.detect,
                                     detection=detection, face_margin=args.face_margin, log=log)
        else:
            summary = predict_shards(args.run_dir, args.data, args.out, split=args.split, num_actors=args.actors,
                                     gpus_per_actor=args.gpus_per_actor, batch_size=args.batch_size or 256,
                                     op_cpus=args.op_cpus, overwrite=args.overwrite,
                                     decision_rule=args.decision_rule, log=log)
    except PawRayError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    if args.photos:
        print(f"throughput: {summary['photos_per_s']:.2f} photos/s ({summary['faces']} faces in "
              f"{summary['photos']} photos, {summary['photos_failed']} without one, in {summary['seconds']:.1f}s, "
              f"{summary['actors']} actor(s) on {summary['device']}) -> {summary['out']}")
        return 0 if summary["photos_failed"] == 0 else 1
    print(f"throughput: {summary['images_per_s']:.1f} images/s ({summary['rows']} rows in {summary['seconds']:.1f}s, "
          f"{summary['actors']} actor(s) on {summary['device']}) -> {summary['out']}")
    return 0 if summary["rows"] == summary["input_rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
