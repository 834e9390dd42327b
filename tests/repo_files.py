"""The repository's own files as tests read them: the root folder, and a YAML file in it parsed
(cluster.yaml, jobs/*.yaml, kuberay/*.yaml)."""

from __future__ import annotations

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_yaml(name: str):
    """``name`` (a path relative to the repository root) parsed as YAML."""
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return yaml.safe_load(f)
