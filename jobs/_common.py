"""What the job entrypoints share: run one ``paw-ray`` subcommand under the script's own name.

The entrypoints are what ``ray job submit --working-dir . -- python jobs/<name>.py ...``
runs on the cluster's head node. They hold no options of their own: each is the
``paw-ray`` subcommand of the same name (its parser, its checks, its exit codes), so
``jobs/train.py --help`` is ``paw-ray train --help``.
"""

from __future__ import annotations

import os
import sys

# The job's working directory (the repository, uploaded by ``--working-dir .``) holds
# paw_ray/: importable even on a cluster where the package is not installed.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)


def run(subcommand: str, argv: list[str] | None = None) -> int:
    from paw_ray import cli

    parser = cli.subcommand_parser(subcommand, prog=f"python jobs/{os.path.basename(sys.argv[0])}")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.command = subcommand
    return cli.run_parsed(args, parser.prog)
