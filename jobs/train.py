"""Job entrypoint: the training pipeline (``paw-ray train``).

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/train.py --preset paper --data s3://BUCKET/paw_ray/celeba \
        --run-dir s3://BUCKET/paw_ray/runs/paper

``--stages a,b`` / ``--from-stage s`` run or rerun some stages (with new ``--data``,
retraining from ``parts`` reuses frl/hint/whole and reruns localize); stages complete for
the same config in ``--run-dir`` are reused. On a cluster, ``--run-dir`` and ``--data``
must name storage every node reaches (a bucket URI or a shared mount).
"""

import sys

from _common import run

if __name__ == "__main__":
    sys.exit(run("train"))
