"""critic's imports point down the layers of docs/architecture.md, and nothing imports in a circle.

Every ``import`` of a ``critic`` module is read from the source (at module level and inside
functions alike, since a lazy import hides a cycle rather than removing it).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import critic

ROOT = Path(critic.__file__).parent

# bottom to top; a module may import from a lower layer, or from its own package within a layer
LAYERS = [
    ["critic.version", "critic.stats"],
    ["critic.config", "critic.seeding", "critic.checkpoint", "critic.plotting", "critic.track"],
    ["critic.presets", "critic.logger", "critic.callbacks", "critic.nn", "critic.distributions", "critic.returns",
     "critic.optim", "critic.normalize", "critic.wrappers"],
    ["critic.losses", "critic.modules", "critic.buffers", "critic.envs", "critic.aggregate"],
    ["critic.collect"],
    ["critic.runners"],
    ["critic.agent", "critic.components"],
    ["critic.algos"],
    ["critic"],  # the package's public API (this entry matches critic/__init__.py only)
    ["critic.export"],  # policy export (ONNX, TorchScript) and its `critic export` command, which critic.cli wires in
    ["critic.tune"],  # hyper-parameter search over the agents (its `critic tune` command is wired into critic.cli)
    ["critic.cli"],
    ["critic.__main__"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ("critic", *p.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name not in mods:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                if n == "critic" or n.startswith("critic."):
                    target = _resolve(n, mods)
                    if target is not None and target != m:
                        edges[m].add(target)
    return edges


def _layer(module: str) -> tuple[int, str]:
    """(layer index, the layer entry the module belongs to): the longest matching prefix."""
    best = (-1, "")
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            inside = module == entry or (entry != "critic" and module.startswith(entry + "."))
            if inside and len(entry) > len(best[1]):
                best = (i, entry)
    assert best[0] >= 0, f"{module} is in no layer of LAYERS: add it"
    return best


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for src, targets in edges.items():
        ls, es = _layer(src)
        for t in targets:
            lt, et = _layer(t)
            if lt > ls or (lt == ls and et != es):
                out.append(f"{src} (layer {ls}) imports {t} (layer {lt})")
    return sorted(out)


def cycles(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    found = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                found.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return found


def test_every_import_points_down_or_stays_in_its_package():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    # negative controls on made-up graphs: the checks above can fail
    graph = import_graph()
    assert "critic.agent" in graph["critic.algos.sac"] and "critic.collect" in graph["critic.agent"]
    assert upward_imports({"critic.agent": {"critic.algos.registry"}}) == [
        "critic.agent (layer 6) imports critic.algos.registry (layer 7)"]
    assert upward_imports({"critic.agent": {"critic.components.checkpointing"}})  # same layer, other package
    assert cycles({"critic.components.a": {"critic.components.b"}, "critic.components.b": {"critic.components.a"}})
