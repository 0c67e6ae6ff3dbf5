"""The house rules of the layout: a small root, documented packages, no import cycle, short files."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, project_files

LIBRARY = ("data", "hashindex", "metrics", "parallel", "runio", "selection", "study")   # packages of the library
MAX_LINES = 420                                                  # "about 400"


def project_modules(root: Path) -> dict:
    """Dotted module name -> file, for the root .py files and every package below `root`
    (scripts/ and tests/ are entry points and test code, not modules of the project)."""
    modules = {}
    for path in project_files(root, "*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in ("scripts", "tests") or any(p.startswith(".") for p in parts):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path, name: str, modules: dict) -> set:
    """The project modules that `path` (module `name`) imports anywhere in its body, function-local
    imports included: `import a.b`, `from a import b` (b a module or a name in a), `from . import x`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                   # relative: from the package upwards
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:          # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict):
    """A list of modules forming an import cycle (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def import_graph(root: Path) -> dict:
    modules = project_modules(root)
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def test_no_import_cycle_among_the_project_modules():
    graph = import_graph(ROOT)
    assert {"ICMR", "evaluate", "metrics.hamming", "runio.checkpoint"} <= set(graph)
    assert "evaluate" in graph["ICMR"] and "metrics.hamming" in graph["evaluate"]   # the parser sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_cycles_through_local_and_relative_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""A package."""\n')
    (tmp_path / "pkg" / "a.py").write_text("from . import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from top import g\n")
    (tmp_path / "top.py").write_text("import pkg.a as a\n\ndef g():\n    pass\n")
    graph = import_graph(tmp_path)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"top"} and graph["top"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "top", "pkg.a"], ["pkg.b", "top", "pkg.a", "pkg.b"],
                                 ["top", "pkg.a", "pkg.b", "top"])
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    pass\n")
    assert find_cycle(import_graph(tmp_path)) is None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_checks_walk_the_project_not_what_git_ignores(tmp_path):
    """A clone or a venv kept in runs/ made the layout and package checks read its files (a stop's grid
    ran from a clone in runs/, and its modules counted as the project's)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("runs/\n")
    for name in ("top.py", "pkg/__init__.py", "runs/clone/pkg/__init__.py", "runs/clone/other.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert project_files(tmp_path, "*.py") == [tmp_path / "pkg/__init__.py", tmp_path / "top.py"]
    assert project_files(tmp_path, "__init__.py") == [tmp_path / "pkg/__init__.py"]
    assert set(project_modules(tmp_path)) == {"pkg", "top"}


def test_the_root_holds_the_core_and_every_package_says_what_it_is():
    root_files = sorted(p.name for p in ROOT.glob("*.py"))
    assert {"ICMR.py", "model.py", "train.py", "evaluate.py"} <= set(root_files) and len(root_files) <= 8, root_files
    for package in (*LIBRARY, "cli"):   # cli: the console commands of the installed package
        init = ROOT / package / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring.split()) >= 8, f"{init} needs a docstring saying what the package does"
    for name in ("test-flickr.sh", "configs", "scripts", "tests", "data", "requirements.txt", "pyproject.toml"):
        assert (ROOT / name).exists(), name


@pytest.mark.parametrize("folder", ["", *LIBRARY, "cli", "scripts", "tests", "data/raw"])
def test_files_stay_short(folder):
    for path in sorted((ROOT / folder).glob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines"
    assert len((ROOT / "evaluate.py").read_text().splitlines()) <= 260


def test_scripts_are_command_lines_with_main():
    for path in sorted((ROOT / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no docstring"
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{path.name}: main()"


def test_no_command_line_takes_an_abbreviated_flag():
    # argparse accepts any unambiguous prefix of a flag unless told not to; train.py's --key flags never did
    for path in [*sorted((ROOT / "scripts").glob("*.py")), ROOT / "test_progressive_hash.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ArgumentParser":
                flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                assert flags.get("allow_abbrev") is False, f"{path.name}: ArgumentParser(allow_abbrev=False)"


if __name__ == "__main__":   # python tests/test_layout.py: print the import graph
    sys.path.insert(0, str(ROOT))
    for module, targets in sorted(import_graph(ROOT).items()):
        print(f"{module}: {', '.join(sorted(targets))}")
