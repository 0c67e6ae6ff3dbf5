"""pyproject.toml: the console commands run the command lines' main(argv), the wheel carries every file
read at run time and every package, and requirements.txt and the package ask for the same things.
(Building and installing a wheel is slow: scripts/check_package.sh, a step of .ci/run.)"""
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT, project_files

tomllib = pytest.importorskip("tomllib")
import cli  # noqa: E402
import config  # noqa: E402

# console command -> (its function in cli/, the command line whose main(argv) it runs)
COMMANDS = {"ucmfh-train": ("train", "train.py"), "ucmfh-eval": ("evaluate", "evaluate.py"),
            "ucmfh-extract": ("extract", "scripts/extract_features.py"),
            "ucmfh-index": ("index", "scripts/build_index.py"), "ucmfh-search": ("search", "scripts/search.py")}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_distribution_and_its_console_commands():
    project = pyproject()["project"]
    assert project["name"] == "ucmfh-ph"   # importlib.metadata.distribution("ucmfh-ph") finds the installed package
    assert project["scripts"] == {command: f"ucmfh_ph.cli:{name}" for command, (name, _) in COMMANDS.items()}
    assert set(cli.COMMANDS) == set(COMMANDS)
    assert cli.PACKAGE_DIR == ROOT   # installed: site-packages/ucmfh_ph/, the same tree


def test_a_command_puts_the_package_folder_first_on_sys_path(monkeypatch):
    """Installed, the folder is on no path; first, so another distribution's `config` or `data` cannot win."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p or Path(p).resolve() != ROOT])
    cli.load_command("ucmfh-train")
    assert sys.path[0] == str(ROOT)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_runs_its_command_lines_main_with_the_arguments(command, monkeypatch):
    function, file = COMMANDS[command]
    module = cli.load_command(command)
    assert Path(module.main.__code__.co_filename).resolve() == (ROOT / file).resolve()   # that file's main
    if "/" not in file:   # a root module is the one the others import (train imports evaluate)
        assert sys.modules[file.removesuffix(".py")] is module
    calls = []
    for other in COMMANDS:   # every main records, so a command wired to another one trains nothing
        monkeypatch.setattr(cli.load_command(other), "main", lambda argv, name=other: calls.append((name, argv)) or [1])
    monkeypatch.setattr(sys, "argv", [command, "--dataset", "demo", "--epoch", "1"])
    # 0, not main's results: a console script would print a returned object and exit with status 1
    assert getattr(cli, function)() == 0 and calls == [(command, ["--dataset", "demo", "--epoch", "1"])]


def test_a_command_parses_its_own_options():
    with pytest.raises(SystemExit) as done:
        cli.run_command("ucmfh-search", ["--help"])
    assert done.value.code == 0


def test_the_wheel_holds_every_package_and_every_file_read_at_run_time():
    setup = pyproject()["tool"]["setuptools"]
    assert setup["package-dir"] == {"ucmfh_ph": "."}

    def folder(package):   # ucmfh_ph.data.raw -> ROOT/data/raw
        return ROOT.joinpath(*package.split(".")[1:])

    packages = set(setup["packages"])
    found = {"ucmfh_ph." + ".".join(p.parent.relative_to(ROOT).parts) for p in project_files(ROOT, "__init__.py")
             if p.parent.relative_to(ROOT).parts[0] not in ("tests",)}
    assert found | {"ucmfh_ph", "ucmfh_ph.scripts"} == packages, "pyproject.toml's packages"
    shipped = {path.resolve() for package, globs in setup["package-data"].items() for glob in globs
               for path in folder(package).glob(glob) if path.is_file()}
    needed = {*config.CONFIG_DIR.rglob("*.yaml"), *(ROOT / "webui" / "static").iterdir()}
    assert {config.CONFIG_DIR / "demo.yaml", config.PRESET_DIR / "ucmfh.yaml", ROOT / "webui/static/index.html"} <= needed
    missing = sorted(str(p.relative_to(ROOT)) for p in needed if p.resolve() not in shipped)
    assert not missing, f"pyproject.toml's package-data leaves out {missing}"


def requirement(line: str):
    """'torch>=2.4   # why' -> ('torch', '>=2.4'), names normalised as pip does."""
    spec = line.split("#")[0].strip()
    name, version = re.match(r"([A-Za-z0-9_.\-]+)(.*)", spec).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), version.replace(" ", "")


def test_requirements_txt_and_the_package_ask_for_the_same_versions():
    project = pyproject()["project"]
    declared = [*project["dependencies"], *(dep for extra, deps in project["optional-dependencies"].items()
                                            if extra != "all" for dep in deps)]
    package = dict(requirement(line) for line in declared)
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.split("#")[0].strip()]
    for name, version in map(requirement, lines):
        assert package.get(name) == version, f"requirements.txt's {name}{version}: pyproject.toml has {package.get(name)}"
    assert set(package) == {requirement(line)[0] for line in lines}
    everything = re.fullmatch(r"ucmfh-ph\[(.*)\]", *project["optional-dependencies"]["all"]).group(1)
    assert set(everything.split(",")) == set(project["optional-dependencies"]) - {"all"}, "the extra `all`"
