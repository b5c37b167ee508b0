"""The package's layers: every import (also inside functions) goes down, never up, and no import cycle exists."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module may import its own layer (without a cycle) and the layers below it.
LAYERS = [
    ("data_synthetic",),
    ("fedsim._tf", "fedsim._flower", "fedsim.validation", "fedsim.tables", "fedsim.metrics", "fedsim.plots",
     "fedsim.settings",
     "fedsim.governance.audit", "fedsim.claims", "fedsim.randomness", "fedsim.plain"),
    ("fedsim.models", "fedsim.training", "fedsim.recipe", "fedsim.cohort", "fedsim.federation"),
    ("fedsim.engine", "fedsim.strategies"),
    ("fedsim.components", "fedsim.results", "fedsim.baselines"),
    ("fedsim.privacy", "fedsim.adversaries", "fedsim.defenses", "fedsim.availability", "fedsim.attacks",
     "fedsim.audit"),
    ("fedsim.governance",),
    ("fedsim.deploy",),
    ("fedsim.experiment",),
    ("fedsim.deploy.flower_app",),
    ("fedsim.studies",),
    ("fedsim.demo",),
    ("fedsim.cli",),
    ("fedsim",),
]


def modules() -> dict[str, Path]:
    found = {}
    for package in ("fedsim", "data_synthetic"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> int:
    """The layer of a module: the one of its longest listed prefix."""
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} is in no layer: add it to LAYERS"
    return rank


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every fedsim/data_synthetic module ``name`` imports, at any depth of the file."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    # A package's own face (its __init__) is what its submodules are part of, not an import.
    return {t for t in found if not name.startswith(t + ".")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_import_goes_down_the_layers():
    upward = sorted(f"{m} ({layer(m)}) imports {t} ({layer(t)})"
                    for m, targets in graph().items() for t in targets if layer(t) > layer(m))
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_there_is_no_import_cycle():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_data_synthetic_knows_nothing_of_fedsim():
    assert not {t for m, targets in graph().items() if m.startswith("data_synthetic") for t in targets
                if t.startswith("fedsim")}


def test_tests_that_start_flowers_runtimes_share_one_worker(request):
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) each of them carries the group xdist schedules by."""
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not run with --dist loadgroup")
    grouped = [item.nodeid for item in request.session.items if item.get_closest_marker("xdist_group")]
    assert all(nodeid.endswith("@flower_runtimes") for nodeid in grouped), grouped


def test_every_fedsim_environment_variable_is_read_in_the_settings_module():
    """``FEDSIM_*`` variables are named and read in ``fedsim/settings.py`` only (docstrings may mention them)."""
    for path in (ROOT / "fedsim").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("FEDSIM_"):
                pytest.fail(f"{path.relative_to(ROOT)} names {node.value}: read it through fedsim.settings")


def test_engines_are_looked_up_by_name_not_imported_by_the_experiment():
    """``fedsim.experiment`` names no engine module: engines register themselves (``fedsim.engine.engines``)."""
    found = modules()
    assert not {m for m in imports("fedsim.experiment", found["fedsim.experiment"], set(found))
                if m.startswith("fedsim.deploy")}


def test_train_config_keys_are_spelled_in_the_recipe_only():
    """What a hospital is asked to do travels as a TrainingRecipe: its config keys are fedsim/recipe.py's alone."""
    import fedsim.recipe as recipe

    keys = {v for k, v in vars(recipe).items() if k.isupper() and isinstance(v, str)} - {"seed"}  # a common word
    assert {"lr", "dpsgd-clip", "dpsgd-noise", "local-epochs", "server-round"} <= keys
    spelled = sorted(f"{path.relative_to(ROOT)}: {node.value!r}" for path in (ROOT / "fedsim").rglob("*.py")
                     if path.name != "recipe.py" for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Constant) and node.value in keys)
    assert not spelled, spelled


def test_no_file_over_400_lines_no_function_over_60():
    """Long files and functions are split by concern (a file per concern, a function per step)."""
    long = []
    for path in (ROOT / "fedsim").rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        long += [f"{path.relative_to(ROOT)}: {node.name}() {node.end_lineno - node.lineno + 1} lines"
                 for node in ast.walk(ast.parse(text)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.end_lineno - node.lineno + 1 > 60]
    assert not long, long


def test_one_plain_serialiser():
    """Configs, component settings and audit entries are written as plain data by one function, fedsim.plain's."""
    defined = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "fedsim").rglob("*.py")
                     for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.FunctionDef) and node.name == "plain")
    assert defined == ["fedsim/plain.py"]


def test_privacy_accounting_lives_in_the_privacy_package():
    """The ledger and its accountants are ``fedsim/privacy/``'s; the engine offers generic hooks only."""
    ledgers = [p.relative_to(ROOT) for p in (ROOT / "fedsim").rglob("ledger.py")]
    assert ledgers == [Path("fedsim/privacy/ledger.py")]
    for path in (ROOT / "fedsim" / "engine").rglob("*.py"):
        names = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
        assert not {n for n in names if "ledger" in n.lower()}, f"{path.relative_to(ROOT)} reads a ledger"
