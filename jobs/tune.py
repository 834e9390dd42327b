"""Job entrypoint: Ray Tune search over one stage's hyperparameters (``paw-ray tune``).

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python jobs/tune.py --preset paper --stage whole --num-samples 16 --scheduler asha \
        --data s3://BUCKET/paw_ray/celeba --run-dir s3://BUCKET/paw_ray/runs/paper

Writes ``<run-dir>/tune/<stage>/summary.{json,md}`` and ``best.yaml`` for
``jobs/train.py --set-from``.
"""

import sys

from _common import run

if __name__ == "__main__":
    sys.exit(run("tune"))
