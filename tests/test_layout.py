"""The shape of the tree (issue 12): thin pages, engine modules of readable size, no import cycle in
engine/ (imports inside functions count too), and no engine module that imports streamlit, ui/, pages/
or a command-line module."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
MAX_PAGE_LINES = 250
MAX_ENGINE_LINES = 450
#: The command-line entry points: only `python -m` runs them, nothing imports them.
CLI_MODULES = ("engine.cli", "engine.train", "engine.lr_find", "engine.serve")


def is_cli(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in CLI_MODULES)


def sources(*folders: str) -> list[Path]:
    """The repository's own Python files under folders (not bench/.fastai-pkgs or other hidden
    folders of installed packages)."""
    return [p for d in folders for p in (ROOT / d).rglob("*.py")
            if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module path.py imports, at any depth of the file (functions included), resolving
    `from engine.x import y` to engine.x.y when that is a module of ours, else engine.x."""
    out: set[str] = set()
    pkg = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                                + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def engine_graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = {d for d in imports_of(path) if d in mods and d != name}
        # A package's __init__ is imported with any of its modules; it is not an edge of its own.
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def test_pages_are_thin():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "pages").glob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_PAGE_LINES} == {}
    assert len((ROOT / "app.py").read_text().splitlines()) <= MAX_PAGE_LINES


def test_engine_modules_are_readable_in_one_sitting():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in ENGINE.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_ENGINE_LINES} == {}


def test_no_import_cycle_in_engine():
    graph = engine_graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_engine_never_imports_ui_pages_or_a_command_line():
    offenders = []
    for path in ENGINE.rglob("*.py"):
        name = module_name(path)
        if is_cli(name):
            continue
        for dep in imports_of(path):
            if dep.split(".")[0] in ("streamlit", "ui", "pages") or is_cli(dep):
                offenders.append(f"{name} imports {dep}")
    assert offenders == []


def test_nothing_outside_the_command_lines_imports_them():
    offenders = []
    for path in list(ROOT.glob("*.py")) + sources("engine", "ui", "pages", "bench"):
        name = module_name(path)
        if is_cli(name):
            continue
        offenders += [f"{name} imports {d}" for d in imports_of(path) if is_cli(d)]
    assert offenders == []


def test_no_single_letter_module_aliases():
    offenders = []
    for path in list(ROOT.glob("*.py")) + sources("engine", "ui", "pages", "bench", "tests"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    is_module = isinstance(node, ast.Import) or a.name[:1].islower()
                    if a.asname and len(a.asname) == 1 and is_module:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {a.name} as {a.asname}")
    assert offenders == []
