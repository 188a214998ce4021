"""The shape the code keeps: thin skins, no import cycles, no giant files, one owner per concept.

Static checks over src/edulora (ast, no imports executed), so a change that breaks the shape fails here.
"""

import ast
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "edulora"
FILES = sorted(SRC.rglob("*.py"))

#: The only modules other than edulora's own that may be imported inside a function. Each is heavy
#: (torch and what builds on it: seconds and hundreds of MB) or optional (an extra, a server, a client),
#: and only some commands need it, so ``import edulora`` and the CLI's start-up stay fast. Anything else
#: is imported at the top of its module, where the reader sees what the module depends on.
LAZY_THIRD_PARTY = {
    "torch", "transformers", "peft", "trl", "datasets", "safetensors", "tokenizers", "numpy",  # the model stack
    "matplotlib",  # report charts only
    "gguf", "xllamacpp", "conversion",  # llama.cpp: optional (conversion is its converter script)
    "openai", "httpx", "uvicorn",  # judge / vLLM client / server
    "textstat", "tqdm", "jinja2", "yaml",  # one command each (quality report, mining, pages, run files)
}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lines(paths) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)


def imports(path: Path, src: Path = SRC) -> list[tuple[str, list[str], bool]]:
    """``(module, names, in_function)`` for each import statement of ``path``, relative ones resolved.

    Every depth counts: an import inside a function is as much a dependency as one at the top (it only
    runs later), so a cycle cannot hide there. ``if TYPE_CHECKING:`` blocks never run and are skipped.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path, src) if path.name == "__init__.py" else module_name(path, src).rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, [], in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append((target, [a.name for a in child.names], in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at any depth). ``from package import name`` depends
    on the submodule when ``name`` is one, else on the package's ``__init__``."""
    files = sorted(src.rglob("*.py"))
    known = {module_name(p, src) for p in files}
    graph = {}
    for path in files:
        me = module_name(path, src)
        edges = set()
        for target, names, _ in imports(path, src):
            submodules = {f"{target}.{n}" for n in names} & known
            edges |= submodules
            if target in known and (not names or len(submodules) < len(names)):
                edges.add(target)
        graph[me] = edges - {me}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first walk meets (each as ``[a, b, …, a]``); none when the graph has none."""
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
    return [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same edges between top-level parts (``edulora.data``, ``edulora.training``, ``edulora.tutor``, …)."""
    def part(module):
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        # The root package (version, lazy public names) sits above every part; importing it is no edge.
        out.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module) and "." in t)
    return out


def test_no_import_cycles_between_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_between_top_level_parts():
    cycles = find_cycles(package_graph(import_graph()))
    assert not cycles, "cycles between parts of edulora:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    """The checks above see through function-level imports, between modules and between parts."""
    src = tmp_path / "pkg"
    for name, text in {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/one.py": "from ..b.two import helper\n",
        "a/three.py": "",
        "b/__init__.py": "",
        "b/two.py": "def helper():\n    from ..a import one\n    return one\n",
        "b/four.py": "def later():\n    from ..a.three import x\n",
    }.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text, encoding="utf-8")
    graph = import_graph(src)
    assert find_cycles(graph) == [["pkg.a.one", "pkg.b.two", "pkg.a.one"]]
    assert find_cycles(package_graph(graph)) == [["pkg.a", "pkg.b", "pkg.a"]]
    # No cycle between modules any more, but part a still needs b (one -> two) and b needs a (four -> three).
    (src / "b/two.py").write_text("def helper():\n    pass\n", encoding="utf-8")
    graph = import_graph(src)
    assert find_cycles(graph) == []
    assert find_cycles(package_graph(graph)) == [["pkg.a", "pkg.b", "pkg.a"]]
    (src / "a/one.py").write_text("", encoding="utf-8")
    assert find_cycles(package_graph(import_graph(src))) == []


def test_imports_inside_functions_are_edulora_modules_or_heavy_libraries():
    stdlib = sys.stdlib_module_names
    loose = []
    for path in FILES:
        for target, _, in_function in imports(path):
            top = target.split(".")[0]
            if in_function and top != "edulora" and top not in LAZY_THIRD_PARTY:
                loose.append(f"{path.relative_to(SRC)}: {target}" + (" (standard library: import it at the top)"
                                                                       if top in stdlib else ""))
    assert not loose, "imported inside a function but not in LAZY_THIRD_PARTY:\n" + "\n".join(loose)


def test_no_private_name_is_imported_from_another_module():
    """A leading underscore means "this module's own": another module that needs it needs a public name."""
    found = []
    for path in FILES:
        for target, names, _ in imports(path):
            found += [f"{path.relative_to(SRC)}: {target}.{n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
    assert not found, found
def test_no_source_file_over_500_lines():
    big = {str(p.relative_to(SRC)): lines([p]) for p in FILES if lines([p]) > 500}
    assert not big, big


def typer_files(src: Path = SRC.parent) -> list[Path]:
    """Every file under ``src`` that imports Typer (at any depth): together they are the command line."""
    return [p for p in sorted(src.rglob("*.py")) if any(t.split(".")[0] == "typer" for t, _, _ in imports(p, src / "edulora"))]


def test_the_command_line_is_one_thin_skin():
    cli = typer_files()
    # One CLI (issue 41): no second Typer app in a library module; every file importing Typer counts.
    assert cli and all(p.parent == SRC / "cli" for p in cli), [str(p.relative_to(SRC)) for p in cli]
    assert lines(cli) <= 450, lines(cli)


def test_a_typer_app_in_a_library_module_is_found(tmp_path):
    for name, text in {"edulora/cli/main.py": "import typer\n", "edulora/serving/bench.py": "x = 1\n",
                       "edulora/evaluation/tool.py": "def main():\n    from typer import Typer\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    found = [str(p.relative_to(tmp_path)) for p in typer_files(tmp_path)]
    assert found == ["edulora/cli/main.py", "edulora/evaluation/tool.py"]


def test_skins_are_thin_and_built_on_the_kept_libraries():
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
