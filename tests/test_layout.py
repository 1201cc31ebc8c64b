"""The package's shape: layers import only the layers below them, no import circles, no module of
the library imports a program, every subpackage says what it holds, no function over 60 lines.

Read from the source with ``ast`` (imports inside functions count too: a lazy import is still a
dependency), so these hold for every module whatever the machine can import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "stcformer"
KERNELS = ROOT / "kernels"  # installed as stcformer.kernels: the ops layer's Triton kernels

# what each layer may import besides itself (cli: anything; the foundation modules: nothing above;
# settings, the one module that reads the environment, is a foundation every layer may ask)
_BASE = {"errors", "io", "settings", "choices"}
ALLOWED = {
    "errors": set(),
    "io": set(),
    "settings": set(),
    "choices": {"errors"},  # the flags' vocabularies, torch-free
    "devices": {"errors"},
    "kernels": set(),  # only each other, by their stcformer.kernels names (and triton)
    "ops": _BASE | {"kernels", "_C"},
    "data": _BASE,
    "model": _BASE | {"ops"},
    "export": _BASE | {"data"},
    "evaluation": _BASE | {"model", "data", "export", "ops"},
    "train": _BASE | {"evaluation", "model", "data", "export", "ops", "devices"},
    "deploy": _BASE | {"model", "ops"},
    "infer": _BASE | {"evaluation", "deploy", "model", "data", "export", "ops", "devices"},
    "testing": _BASE | {"ops"},  # the public test kit: tests and benchmarks import it, the library never
}
# where os.environ may be read or written: the settings module, the programs, the torchrun glue
ENVIRONMENT_READERS = {"stcformer.settings", "stcformer.train.distributed", "stcformer.testing"}
# the programs: ``python -m stcformer[.train|.evaluate|.infer|.deploy]`` start in these and go to cli/
ENTRY_POINTS = {"stcformer.__main__", "stcformer.evaluate", "stcformer.view", "stcformer.train.__main__", "stcformer.infer.__main__",
                "stcformer.deploy.__main__", "stcformer.data.synthetic.__main__"}
MAX_LINES = 60


def _modules() -> dict:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    for path in KERNELS.glob("*.py"):
        name = "stcformer.kernels" + ("" if path.stem == "__init__" else "." + path.stem)
        mods[name] = path
    return mods


MODULES = _modules()


def _imports(path: Path, top_level_only: bool = False):
    """The stcformer modules ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("stcformer"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES or alias.name == "_C" else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("stcformer"))


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_are_absolute():
    """Imports are absolute, so the layer rules below see every one of them."""
    relative = [f"{m}:{n.lineno}" for m, p in MODULES.items() for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative


def test_layers_import_only_the_layers_below():
    bad = []
    for module, path in MODULES.items():
        layer = _layer(module)
        if module in ENTRY_POINTS or layer in ("cli", ""):
            continue
        assert layer in ALLOWED, f"{module}: layer {layer!r} has no rule in ALLOWED"
        for target in set(_imports(path)):
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(bad))


def test_only_the_settings_programs_and_torchrun_glue_touch_the_environment():
    """Switches are read once, in stcformer.settings (get/set/reset there), not per module or per call."""
    bad = [m for m, p in MODULES.items() if "os.environ" in p.read_text() and m not in ENVIRONMENT_READERS
           and _layer(m) != "cli" and m not in ENTRY_POINTS]
    assert not bad, bad


def test_kernels_are_covered_and_import_each_other_absolutely():
    kernels = [m for m in MODULES if _layer(m) == "kernels"]
    assert {"stcformer.kernels.common", "stcformer.kernels.spatial", "stcformer.kernels.temporal"} <= set(kernels)
    assert "stcformer.kernels.common" in set(_imports(MODULES["stcformer.kernels.spatial"]))


def test_the_library_never_imports_the_test_kit():
    bad = [f"{m} imports {t}" for m, p in MODULES.items() if m != "stcformer.testing" and _layer(m) != "cli"
           for t in _imports(p) if t == "stcformer.testing"]
    assert not bad, bad


def test_only_the_programs_import_cli():
    bad = [f"{m} imports {t}" for m, p in MODULES.items() if _layer(m) != "cli" and m not in ENTRY_POINTS
           for t in _imports(p) if _layer(t) == "cli"]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    """No circle among module-level imports (the ones that run when a module is imported)."""
    graph = {m: {t for t in _imports(p, top_level_only=True) if t in MODULES and t != m}
             for m, p in MODULES.items()}
    # a package's __init__ is imported before its submodules: an edge to a parent package is no circle
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_two_modules_import_each_other():
    """Not even through an import inside a function: a lazy import hides a circle from the loader,
    not from a reader."""
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m and not m.startswith(t + ".")}
             for m, p in MODULES.items()}
    pairs = sorted({tuple(sorted((m, t))) for m, ts in graph.items() for t in ts if m in graph.get(t, ())})
    assert not pairs, pairs


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_every_subpackage_says_what_it_holds(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text()))
    assert doc and len(doc.split()) >= 8, f"{package}: no docstring saying what it holds"


def test_no_function_over_60_lines():
    """Library functions; not the Triton kernels: each @triton.jit kernel is one GPU program whose
    launches the static kernel report pins, and its loops read best whole."""
    long = []
    for module, path in MODULES.items():
        if _layer(module) == "kernels":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_the_rules_see_real_imports():
    """The checks above would pass on an empty graph: make sure it is not empty."""
    assert "stcformer.ops.dispatch" in set(_imports(MODULES["stcformer.ops.attention"]))
    assert _layer("stcformer.evaluation.predict") == "evaluation" and len(MODULES) > 40
