"""The architecture's rules, read from the code: layers import only downward, no import loops,
and importing the library changes nothing in the importer's JAX (docs/architecture.md)."""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "acjax"

LAYERS = ("core", "envs", "networks", "agents", "run")
"""Bottom to top: a module may import its own layer and the ones before it."""

LIBRARY_FACES = ("acjax.returns", "acjax.losses", "acjax.distributions", "acjax.replay",
                 "acjax.config")
"""Top-level faces of the pure core: they import only `acjax.core`."""


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: pathlib.Path) -> set[str]:
    """Every acjax module `module` imports (also inside functions), as resolved names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            if target.split(".")[0] != "acjax":
                continue
            resolved = _resolve(target)
            if resolved and resolved != module:
                found.add(resolved)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(module: str) -> str:
    """`core` ... `run`, `cpu`, or `face` (the top-level modules and `acjax` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in (*LAYERS, "cpu") else "face"


def _reaches(start: str, goal: str, skip_edge) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack.extend(t for t in GRAPH[node] if not skip_edge(node, t))
    return False


def _package_to_own_submodule(a: str, b: str) -> bool:
    """A package's `__init__` importing its own submodules (its public face) is no loop."""
    return MODULES[a].name == "__init__.py" and b.startswith(a + ".")


def test_the_layer_walk_sees_the_whole_package():
    assert {"acjax.core.returns", "acjax.envs.gymnax", "acjax.networks.actor_critic",
            "acjax.agents.onpolicy.loop", "acjax.run.cli", "acjax.cpu.backend",
            "acjax.ppo_a2c", "acjax.agents.alphazero.loop", "acjax.core.search_losses",
            "acjax.networks.policy_value", "acjax.alphazero"} <= set(MODULES)
    assert "acjax.core.losses" in GRAPH["acjax.agents.onpolicy.loop"]
    assert "acjax.agents.onpolicy.ppo" in GRAPH["acjax.run.registry"]


def test_no_import_loops():
    loops = [
        f"{a} -> {b}" for a in GRAPH for b in GRAPH[a]
        if not _package_to_own_submodule(a, b)
        and _reaches(b, a, _package_to_own_submodule)
    ]
    assert not loops, "import loops (each arrow closes one): " + "; ".join(loops)


def test_arrows_point_only_down_the_layers():
    upward = []
    for importer, targets in GRAPH.items():
        have = _layer(importer)
        for target in targets:
            want = _layer(target)
            if want == "face" and target != "acjax":
                upward.append(f"{importer} -> {target} (a top-level face)")
            elif want == "cpu" and have not in ("cpu", "run", "face"):
                upward.append(f"{importer} -> {target} (only the run layer imports acjax.cpu)")
            elif have == "cpu" and want != "cpu":
                upward.append(f"{importer} -> {target} (acjax.cpu imports nothing of acjax)")
            elif have in LAYERS and want in LAYERS and LAYERS.index(want) > LAYERS.index(have):
                upward.append(f"{importer} -> {target} ({have} below {want})")
    assert not upward, "imports up the layers: " + "; ".join(upward)


def test_the_library_faces_import_only_the_core_and_acjax_imports_nothing():
    for face in LIBRARY_FACES:
        assert GRAPH[face] and all(_layer(t) == "core" for t in GRAPH[face]), (face, GRAPH[face])
    assert GRAPH["acjax"] == set()
    # Faces of the trainers reach the command line only inside their functions.
    for face in ("acjax.ppo_a2c", "acjax.sac", "acjax.td3", "acjax.impala", "acjax.alphazero"):
        top = ast.parse(MODULES[face].read_text()).body
        imported = {n.module for n in top if isinstance(n, ast.ImportFrom)}
        assert not any(m.startswith(("acjax.run", "acjax.cpu")) for m in imported), face


def test_private_jax_is_used_only_where_its_fallbacks_are_tested():
    users = sorted(m for m, p in MODULES.items() if "jax._src" in p.read_text())
    assert users == ["acjax.cpu.backend"]  # tests/cpu/test_backend.py hides each name


_SIDE_EFFECTS = """
import json, os, sys
import jax
key = jax.random.PRNGKey(0)
def lowered():
    return jax.jit(lambda k: jax.random.uniform(k, (4,))).lower(key).as_text()
before = (os.environ.get("XLA_FLAGS"), lowered(), sorted(jax.config.values.items()))
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
after = (os.environ.get("XLA_FLAGS"), lowered(), sorted(jax.config.values.items()))
print(json.dumps({"flags": [before[0], after[0]], "hlo_same": before[1] == after[1],
                  "config_changes": [str(a) for a, b in zip(after[2], before[2]) if a != b],
                  "while_loops": after[1].count("stablehlo.while")}))
"""


@pytest.mark.parametrize("modules", [
    ["acjax"],
    ["acjax.losses", "acjax.returns", "acjax.distributions", "acjax.networks"],
    ["acjax.replay", "acjax.config", "acjax.envs", "acjax.ppo_a2c", "acjax.sac", "acjax.td3",
     "acjax.impala", "acjax.alphazero"],
], ids=["acjax", "library", "faces"])
def test_importing_acjax_changes_nothing_in_the_importers_jax(modules):
    import os

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", _SIDE_EFFECTS, *modules], capture_output=True,
                         text=True, timeout=300, check=False, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["flags"] == [None, None]  # XLA_FLAGS untouched
    assert result["hlo_same"], "jax.random lowers differently after the import"
    assert result["config_changes"] == []


@pytest.mark.parametrize("face", [*LIBRARY_FACES, "acjax.networks", "acjax.envs"])
def test_the_library_faces_export_exactly_their_all(face):
    """`acjax.losses` once exposed `chex`, `jax`, `jnp` and `parallel`: a face's public names are
    its `__all__`, and every name there exists."""
    import importlib

    module = importlib.import_module(face)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if getattr(module, n).__class__.__name__ == "module"
                  and getattr(module, n).__name__.startswith(face + ".")}
    assert public - submodules == set(module.__all__), face
    assert not {"chex", "jax", "jnp", "np", "parallel", "collectives"} & public
