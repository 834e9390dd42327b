"""Check that paw_ray's modules import only downward, by the layer order of
docs/architecture.md ("Layers"), and that no import circle exists among them.

Every import of a ``paw_ray`` module counts, at module top or inside a function: both are
dependencies. The layers are read from the numbered list under "## Layers" in the docs:
each item's backticked paths (relative to ``paw_ray/``; a folder ends with ``/``) belong to
that layer, and a module belongs to the layer of the longest path that holds it. Every
module must be in some layer.

    python tools/check_layers.py        # prints each violation; exit status 1 if any
"""

from __future__ import annotations

import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "paw_ray")
DOC = os.path.join(ROOT, "docs", "architecture.md")


def read_layers(doc: str = DOC) -> dict[str, int]:
    """Path prefix (relative to ``paw_ray/``) -> layer number, from the docs' "Layers" list."""
    text = open(doc, encoding="utf-8").read()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for number, body in re.findall(r"^(\d+)\. (.*(?:\n   .*)*)", section, flags=re.M):
        for path in re.findall(r"`([^`]+)`", body):
            if not os.path.exists(os.path.join(PACKAGE, path)):
                raise SystemExit(f"{doc}: layer {number} names `{path}`, which is not in paw_ray/")
            layers[path] = int(number)
    if not layers:
        raise SystemExit(f"{doc}: no numbered layer list under '## Layers'")
    return layers


def modules() -> dict[str, str]:
    """Dotted module name -> its path relative to ``paw_ray/``."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), PACKAGE)
                name = "paw_ray." + rel[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = rel
    return out


def imports_of(path: str, name: str, known: set[str]) -> set[str]:
    """The paw_ray modules that the module at ``path`` imports (anywhere in it)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # "from paw_ray.data import shards" imports the module paw_ray.data.shards
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "paw_ray.x.y.Name" -> the module that holds Name
                t = t.rpartition(".")[0]
            if t.startswith("paw_ray") and t != name and t != "paw_ray":
                found.add(t)
    return found


def layer_of(rel: str, layers: dict[str, int]) -> int | None:
    holders = [p for p in layers if rel == p or (p.endswith("/") and rel.startswith(p))]
    return layers[max(holders, key=len)] if holders else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(layers: dict[str, int] | None = None) -> list[str]:
    """Every violation, one line each (``layers``: the docs' layers unless given)."""
    layers = read_layers() if layers is None else layers
    mods = modules()
    graph = {m: imports_of(os.path.join(PACKAGE, rel), m, set(mods)) for m, rel in mods.items()}
    problems = []
    for m, rel in sorted(mods.items()):
        mine = layer_of(rel, layers)
        if mine is None:
            problems.append(f"{rel}: in no layer of docs/architecture.md")
            continue
        for target in sorted(graph[m]):
            theirs = layer_of(mods[target], layers)
            if theirs is not None and theirs > mine:
                problems.append(f"{rel} (layer {mine}) imports {target} (layer {theirs}): upward")
    for component in cycles(graph):
        problems.append(f"import circle: {' <-> '.join(component)}")
    return problems


def main() -> int:
    problems = check()
    for p in problems:
        print(p)
    print(f"check_layers: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
