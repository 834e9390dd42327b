"""``python -m paw_ray``: the ``paw-ray`` command, for an environment without its script on PATH."""

import sys

from paw_ray.cli import main

sys.exit(main())
