"""The import layers of docs/architecture.md hold: ``tools/check_layers.py`` finds no upward
import and no circle in paw_ray, and it does find them where they exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import check_layers  # noqa: E402


def test_paw_ray_imports_only_downward_and_has_no_circle():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "check_layers.py")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert out.stdout.strip().endswith("0 problem(s)")


def test_every_module_is_in_a_layer_and_the_layers_are_ordered():
    layers = check_layers.read_layers()
    assert layers["errors.py"] == 1 and layers["data/"] == 2 and layers["cli.py"] == max(layers.values())
    for rel in check_layers.modules().values():
        assert check_layers.layer_of(rel, layers) is not None, rel


def test_an_upward_import_is_reported():
    layers = dict(check_layers.read_layers())
    layers["data/"] = 6  # data above the stages that read it
    problems = check_layers.check(layers)
    assert any(p.startswith("train/stages/localize.py (layer 3) imports paw_ray.data.") for p in problems), problems


def test_a_circle_is_reported():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert check_layers.cycles(graph) == [["a", "b", "c"]]
    assert check_layers.cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("source, expected", [
    ("from paw_ray.data import shards", {"paw_ray.data.shards"}),
    ("from paw_ray.config import Config", {"paw_ray.config"}),
    ("def f():\n    import paw_ray.train.run", {"paw_ray.train.run"}),
    ("from . import storage", {"paw_ray.storage"}),
])
def test_imports_are_found_at_the_top_and_inside_functions(tmp_path, source, expected):
    known = set(check_layers.modules())
    f = tmp_path / "m.py"
    f.write_text(source)
    assert check_layers.imports_of(str(f), "paw_ray.m", known) == expected
