"""The architecture holds: data flows model → trace → run → analysis → report, imports only go down,
no cycles outside the model registry, and functions that pass a run between stages take objects."""
import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "effkit"

# the floors, lowest first; a module may import its own unit and any lower floor, never a higher one
FLOORS = [
    {"_version", "errors", "paths", "files", "timing", "config", "devices"},
    {"models"},
    {"kernels"},
    {"trace"},
    {"device"},
    {"run"},
    {"analysis"},
    {"report"},
    {"profiling", "scaling", "diffing", "advising", "sweeping"},
    {"cli"},
    {"__main__"},
    {"__init__"},
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def _modules():
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        yield ".".join(rel.parts).removesuffix(".__init__"), f


def _imports(path: Path, module: str) -> set[str]:
    """Every effkit module a file imports, lazy imports inside functions included."""
    out = set()
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "effkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] != "effkit":
                continue
            for a in node.names:  # `from effkit.x import y` may import the submodule effkit.x.y
                sub = f"{base}.{a.name}"
                out.add(sub if (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (ROOT.parent / Path(*sub.split("."))).is_dir() else base)
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_imports_only_go_down():
    wrong = []
    for module, path in _modules():
        src = _unit(module)
        for dst_module in _imports(path, module):
            dst = _unit(dst_module)
            if dst == src:
                continue
            if dst == "__init__" or FLOOR[dst] > FLOOR[src] or (FLOOR[dst] == FLOOR[src] and FLOOR[src] > 0):
                wrong.append(f"{module} imports {dst_module}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_outside_the_model_registry():
    graph = {m: {d for d in _imports(p, m)} for m, p in _modules()}
    registry = {m for m in graph if m.startswith("effkit.models")}  # zoo modules register with the registry, which loads them
    cycles = []

    def visit(node, stack, seen):
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not set(cycle) <= registry:
                    cycles.append(" -> ".join(cycle))
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt], seen)

    for m in graph:
        visit(m, [m], {m})
    assert not cycles, "\n".join(sorted(set(cycles))[:10])


def _params(fn) -> int:
    return len([p for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)])


def test_functions_that_pass_a_run_take_objects():
    from effkit.profiling import run_compare, run_profile
    from effkit.report.html import render
    from effkit.run import runner

    for fn in (runner.run, runner._Session.point, render, run_profile, run_compare):
        assert _params(fn) <= 8, f"{fn.__qualname__} takes {_params(fn)} parameters"


@pytest.mark.parametrize("module", ["effkit.trace", "effkit.run", "effkit.report", "effkit.analysis", "effkit.device", "effkit.models"])
def test_no_function_shadows_its_module(module):
    import importlib
    import pkgutil

    pkg = importlib.import_module(module)
    for info in pkgutil.iter_modules(pkg.__path__):
        assert not callable(getattr(pkg, info.name, None)) or inspect.ismodule(getattr(pkg, info.name)), f"{module}.{info.name}"
