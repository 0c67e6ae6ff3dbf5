"""The console commands of the installed package (pyproject.toml's [project.scripts]): each runs
the main(argv) of a command line of the checkout, with the same arguments.

The wheel installs this repository's tree, unchanged, as the folder `ucmfh_ph/`, whose modules import
each other by their top-level names (`from config import ...`, `import data`), as they do in a
checkout. So a command first puts that folder on sys.path, then imports its command line.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]   # the checkout, or site-packages/ucmfh_ph/
# console command -> the file, relative to PACKAGE_DIR, whose main(argv) it runs
COMMANDS = {
    "ucmfh-train": "train.py",
    "ucmfh-eval": "evaluate.py",
    "ucmfh-extract": "scripts/extract_features.py",
    "ucmfh-index": "scripts/build_index.py",
    "ucmfh-search": "scripts/search.py",
}


def load_command(command: str):
    """The module behind `command`. A root module is imported by its name, the one the other modules
    import it by (train imports evaluate); scripts/ is no package (another distribution's `scripts`
    could win the name), so a script is loaded from its file, under a name of its own."""
    if str(PACKAGE_DIR) not in sys.path:
        sys.path.insert(0, str(PACKAGE_DIR))
    file = PACKAGE_DIR / COMMANDS[command]
    if file.parent == PACKAGE_DIR:
        return importlib.import_module(file.stem)
    name = "ucmfh_command_" + file.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_command(command: str, argv=None) -> int:
    """Run `command`'s main(argv) (argv: sys.argv[1:] when None) and return the exit status 0. The
    mains return their results (lists, dicts, paths), which a console script would print as an exit
    message with status 1; errors leave through SystemExit (status 2, one line) as from a checkout."""
    load_command(command).main(sys.argv[1:] if argv is None else list(argv))
    return 0


def train() -> int:
    return run_command("ucmfh-train")


def evaluate() -> int:
    return run_command("ucmfh-eval")


def extract() -> int:
    return run_command("ucmfh-extract")


def index() -> int:
    return run_command("ucmfh-index")


def search() -> int:
    return run_command("ucmfh-search")
