"""The shape the code keeps: thin skins, no import cycles, no giant files, one owner per concept.

Static checks over src/edulora (ast, no imports executed), so a change that breaks the shape fails here.
"""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "edulora"
FILES = sorted(SRC.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lines(paths) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)


def top_level_imports(path: Path) -> set[str]:
    """edulora modules imported when ``path`` is imported (module level and class bodies, not functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("edulora"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("edulora"):
                    found.add(target)
                    found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    known = {module_name(p) for p in FILES}
    return {m for m in found if m in known}


def test_no_import_cycles():
    graph = {module_name(p): top_level_imports(p) - {module_name(p)} for p in FILES}
    state: dict[str, int] = {}
    cycles = []

    def walk(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    # A package importing its own submodules in __init__ is not a cycle between concepts.
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, real


def test_no_source_file_over_500_lines():
    big = {str(p.relative_to(SRC)): lines([p]) for p in FILES if lines([p]) > 500}
    assert not big, big


def test_skins_are_thin_and_built_on_the_kept_libraries():
    cli = sorted((SRC / "cli").glob("*.py"))
    assert lines(cli) <= 400, lines(cli)
    http = [SRC / "serving" / "app.py"]
    assert all(p.exists() for p in http) and lines(http) <= 250, lines(http)
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for banned in ("import argparse", "http.server", "urllib.request"):
            assert banned not in text, f"{path.relative_to(SRC)} uses {banned}"


def test_no_method_of_a_library_object_is_replaced_at_run_time():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        assert "types.MethodType" not in text and not re.search(r"\.forward\s*=\s", text), path


def test_run_directory_file_names_live_in_one_module():
    names = ("config.yaml", "summary.json", "eval.jsonl", "metrics.jsonl", "data.json")
    for path in FILES:
        if path.name == "rundir.py":
            continue
        code = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                         if not line.lstrip().startswith("#"))
        strings = [node.value for node in ast.walk(ast.parse(code))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        assert not [s for s in strings if s in names], path.relative_to(SRC)


def test_no_loose_template_parameter():
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "create":
                args = [a.arg for a in node.args.args + node.args.kwonlyargs]
                assert "template" not in args, f"{path.relative_to(SRC)}:{node.lineno} {node.name}"
