"""Job entrypoint: CelebA's own files -> Parquet shards (``paw-ray prepare-celeba``).

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/prepare_celeba.py --root /mnt/data/CelebA --out s3://BUCKET/paw_ray/celeba

``--root`` must be readable on the node the job's driver runs on (the head) and on
the nodes that run its Ray tasks (a shared mount or a bucket); ``--out`` likewise.
"""

import sys

from _common import run

if __name__ == "__main__":
    sys.exit(run("prepare-celeba"))
