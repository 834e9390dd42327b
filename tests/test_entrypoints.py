"""The command's entry points: ``python -m paw_ray`` is ``paw-ray``, and ``--version`` prints
the one version string that pyproject.toml reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "paw_ray", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def _pyproject_version() -> str:
    """The version pyproject.toml gives the package: its own ``version``, or the attribute
    its setuptools ``dynamic`` table names (read from the source, as setuptools does)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        meta = tomllib.load(f)
    if "version" in meta["project"]:
        return meta["project"]["version"]
    assert "version" in meta["project"].get("dynamic", []), "pyproject.toml gives no version"
    attr = meta["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, name = attr.rsplit(".", 1)
    base = os.path.join(ROOT, *module.split("."))
    with open(os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py", encoding="utf-8") as f:
        found = re.search(rf"^{name}\s*=\s*[\"']([^\"']+)[\"']", f.read(), re.M)
    assert found, f"{attr} not found"
    return found.group(1)


def test_version_is_pyprojects():
    out = _run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"paw-ray {_pyproject_version()}"


def test_module_runs_the_command():
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: paw-ray")
    for command in ("synth", "prepare-celeba", "train", "tune", "ablate", "report", "predict", "export"):
        assert command in out.stdout


def test_module_without_a_command_fails_like_the_command():
    out = _run()
    assert out.returncode == 2
    assert "required: COMMAND" in out.stderr
