"""The house: the import graph of the project's modules (read with ``ast``, function-level imports
included) has no cycle and follows the data flow of DESIGN.md, and only the modules that build or
train a model import torch (checked on the graph and, in a fresh interpreter, on ``sys.modules``)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("estimators", "tasks", "encoders", "benchmark", "leaderboard")
#: The command layer (``benchmark.cli`` and its subcommand modules, ``python -m benchmark``) is on top:
#: it may import every package, and nothing else imports it.
def is_command(module: str) -> bool:
    return module == "benchmark.__main__" or module == "benchmark.cli" or module.startswith("benchmark.cli.")
#: Upstream to downstream (DESIGN.md, "Data flow"): a module imports only its own layer or those before it.
LAYERS = ("estimators", "tasks", "encoders", "benchmark", "leaderboard", "commands")
#: The modules that build or train models, the only ones whose import loads torch.
TORCH = {"encoders.conse", "encoders.dinov2_imgfocus", "encoders.fold", "encoders.open_clip_encoder",
         "encoders.rehearsal", "encoders.smoke", "encoders.timm_encoder", "benchmark.finetune.loop",
         "benchmark.finetune.outcomes", "benchmark.finetune.tuned"}
TORCH_ROOTS = {"torch", "torchvision", "open_clip", "timm", "transformers"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str], set[str]]:
    """(project modules imported anywhere in the file, those imported at module level, third-party
    top-level packages imported at module level)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    every, eager, external = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            own = [target.rsplit(".", k)[0] for k in range(target.count(".") + 1)]  # a.b.c, a.b, a
            hits = {m for m in own if m in known and not package.startswith(m)}  # its own packages are loading
            every |= hits
            if id(node) in top:
                eager |= hits
                if target.split(".")[0] not in PACKAGES:
                    external.add(target.split(".")[0])
    return every - {name}, eager - {name}, external


def graph():
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer(module: str) -> int:
    return LAYERS.index("commands" if is_command(module) else module.split(".")[0])


def test_no_module_imports_itself_back_through_others():
    edges = {name: every for name, (every, _, _) in graph().items()}
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt])
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_packages_import_each_other_without_a_cycle():
    """Collapsed to top-level packages (command modules included), the import graph has no cycle:
    ``leaderboard`` renders what it is given and imports nothing from ``benchmark``, which builds the board."""
    crossing = {(a, b) for a, (every, _, _) in graph().items() for b in every if a.split(".")[0] != b.split(".")[0]}
    reach = {p: {b.split(".")[0] for a, b in crossing if a.split(".")[0] == p} for p in PACKAGES}
    for _ in PACKAGES:  # transitive closure
        reach = {p: reached.union(*(reach[q] for q in reached)) for p, reached in reach.items()}
    cyclic = {p for p in PACKAGES if p in reach[p]}
    assert not cyclic, "package import cycle through " + ", ".join(
        sorted(f"{a} -> {b}" for a, b in crossing if {a.split(".")[0], b.split(".")[0]} <= cyclic))


def test_packages_import_upstream_only():
    wrong = [f"{a} -> {b}" for a, (every, _, _) in graph().items() for b in every if layer(b) > layer(a)]
    assert wrong == []


def test_only_the_model_modules_load_torch():
    found = graph()
    loads = {name for name, (_, _, external) in found.items() if external & TORCH_ROOTS}
    changed = True
    while changed:  # ... or import, at module level, a module that does
        reached = {name for name, (_, eager, _) in found.items() if eager & loads}
        changed = not reached <= loads
        loads |= reached
    assert loads == TORCH


@pytest.mark.e2e
def test_the_light_commands_and_modules_load_no_torch_in_a_fresh_interpreter(tmp_path):
    light = sorted(set(modules()) - TORCH - {"benchmark.__main__"})
    code = (f"import importlib, sys\nfor m in {light!r}:\n    importlib.import_module(m)\n"
            "from benchmark.cli import main\n"
            "for what in ('estimators', 'tasks', 'methods', 'suites'):\n    assert main(['ls', what]) == 0\n"
            "from benchmark.suites import get_suite\nget_suite('paper')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in " f"{sorted(TORCH_ROOTS)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.e2e
def test_the_kernel_and_the_light_packages_load_no_scorer_scipy_or_sklearn(tmp_path):
    """Importing tasks, the embedding cache, the leaderboard renderer or the estimators kernel
    registers no estimator yet (the registry imports them on first use), so none of them pays for
    scipy or scikit-learn; the registry still lists every built-in estimator when asked."""
    code = ("import sys\nimport tasks, encoders.cache, leaderboard, estimators\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sklearn'))\n"
            "scorers = sorted(m for m in sys.modules if m.startswith('estimators.') and m.split('.')[1] not in "
            "('base', 'embedding_set', 'errors', 'registry'))\n"
            "print(heavy, scorers, 'logme' in estimators.list_estimators())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[] [] True"


@pytest.mark.e2e
def test_ruff_finds_nothing():
    """Line length and import order as pyproject.toml's [tool.ruff] sets them (`ruff check .`)."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_no_subcommand_imports_another_and_only_commands_import_the_cli():
    """DESIGN.md: commands are on top, and no command imports another. The subcommand modules of
    ``benchmark.cli`` share only ``options`` (their arguments) and ``board`` (evaluate + render)."""
    from benchmark.cli import SUBCOMMANDS

    found = graph()
    subcommands = {f"benchmark.cli.{name}" for name in SUBCOMMANDS}
    crossing = [f"{a} -> {b}" for a in subcommands for b in found[a][0] if b in subcommands]
    assert crossing == []
    outside = [f"{a} -> {b}" for a, (every, _, _) in found.items() if not is_command(a)
               for b in every if is_command(b)]
    assert outside == []


def test_every_import_of_the_project_names_a_module_that_exists():
    """Function-level imports too (the ones a test run may never reach), in the code and the tests."""
    found = set(modules())
    wrong = []
    for path in sorted([*(ROOT / p for p in PACKAGES), ROOT / "tests"]):
        for file in sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                wrong += [f"{file.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in PACKAGES and n not in found]
    assert wrong == []
