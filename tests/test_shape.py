"""The codebase's shape, kept by tests: short functions, a thin CLI, public library APIs only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unlearn_lab"
MAX_FUNCTION_LINES = 60
MAX_CLI_LINES = 250


def functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE.parent), node


def test_no_function_is_longer_than_sixty_lines():
    """Decorators and docstrings count: a function is read whole."""
    long = [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, node in functions()
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_the_cli_only_parses():
    """Every module of unlearn_lab/cli/ declares options and hands them on: short, no loops, no error handling."""
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) <= MAX_CLI_LINES, path
        tree = ast.parse(source)
        loops = [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While, ast.AsyncFor))]
        handlers = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)]
        assert not loops and not handlers, f"{path.name} has loops at {loops} and error handling at {handlers}"


def test_no_private_optuna_or_mlflow_attribute():
    """`study._storage`, `trial._trial_id`, `client._tracking_client`...: private APIs change without notice."""
    private = re.compile(r"\b(study|trial|storage|client|frozen|run|mlflow|optuna)\._[a-z]\w*")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert not found, "private attributes used:\n" + "\n".join(found)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, counting every import statement: at the top, inside functions
    and under TYPE_CHECKING alike (a function-local import is still a dependency; it only hides a cycle)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_the_package_has_no_import_cycle():
    """No module reaches itself through imports (docs/architecture.md draws the layers)."""
    graph = import_graph()
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:10])


# the package's layers, lowest first (docs/architecture.md): a module imports its own layer and the ones below only.
# A module belongs to the layer of its longest matching prefix (models.prepare is a stage; models.load a part).
LAYERS = (
    ("foundations", ("unlearn_lab", "errors", "config", "fingerprint", "plugins", "runtime", "distributed", "plots")),
    ("parts", ("data", "models", "methods", "metrics", "tracking", "benchmarks", "seeds")),
    ("planning", ("plan", "estimates", "preflight", "train", "unlearn")),
    ("stages", ("models.prepare", "evaluation", "records", "experiment", "repeated")),
    ("studies", ("sweep", "leaderboard")),
    ("commands", ("commands", "cli")),
)


def layer_of(module: str) -> int:
    short = module.removeprefix("unlearn_lab.") if module != "unlearn_lab" else module
    found = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if short == prefix or short.startswith(prefix + ".")
    ]
    assert found, f"{module} belongs to no layer: add it to tests/test_shape.py LAYERS and docs/architecture.md"
    return max(found)[1]


def test_no_import_runs_from_a_lower_layer_up():
    upward = [
        f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
        for src, targets in import_graph().items()
        for dst in targets
        if layer_of(dst) > layer_of(src)
    ]
    assert not upward, "imports from a lower layer up:\n" + "\n".join(sorted(upward))
