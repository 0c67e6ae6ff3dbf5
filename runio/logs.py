"""What a command shows while it runs: its lines through `logging`, progress bars on a terminal only.

Every command line calls setup_logging first: the project's logger `ucmfh` then writes info and
debug lines to sys.stdout and warnings and errors to sys.stderr, looking each stream up at every
line (so a test's captured stdout, or a grid's redirect into train.log, gets them). The normal
level prints what the commands always printed; --quiet keeps warnings and errors only, --verbose
adds debug lines. Under torchrun, processes other than rank 0 are silent. progress() is tqdm with
a bar only where someone watches: a terminal, not --quiet, no CI environment variable, rank 0.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

from tqdm import tqdm

LOGGER = logging.getLogger("ucmfh")
SILENT = logging.CRITICAL + 1       # above every level: nothing is shown
_STATE = {"quiet": False, "verbose": False, "rank": 0}


class StandardStreams(logging.Handler):
    """Lines below WARNING to sys.stdout, the others to sys.stderr, as they are at each line."""

    def emit(self, record):
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging's convention: a broken stream is reported, never raised
            self.handleError(record)


def setup_logging(quiet: bool = False, verbose: bool = False, rank: int | None = None) -> None:
    """Set the level of the project's lines: INFO, WARNING with `quiet`, DEBUG with `verbose`;
    nothing at all on a rank other than 0 (`rank`; default: the one torchrun set)."""
    from parallel.ranks import launched_rank   # here, not at the top: torch stays out of light imports (study.workers)

    rank = launched_rank() if rank is None else rank
    _STATE.update(quiet=quiet, verbose=verbose, rank=rank)
    if not any(isinstance(h, StandardStreams) for h in LOGGER.handlers):
        handler = StandardStreams()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.propagate = False          # the root logger's handlers would show every line twice
    LOGGER.setLevel(SILENT if rank else logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


@contextlib.contextmanager
def logging_kept():
    """Restores the logging setup on leaving: a command run inside another sets its own."""
    saved = dict(_STATE)
    try:
        yield
    finally:
        setup_logging(**saved)


def add_log_flags(parser) -> None:
    """--quiet and --verbose on an argparse command line."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="warnings and errors only (no progress bars)")
    group.add_argument("--verbose", action="store_true", help="debug lines too")


def info(*parts) -> None:
    """A `log=print` replacement: the parts, joined by spaces, as one info line."""
    LOGGER.info(" ".join(str(part) for part in parts))


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def progress(iterable=None, **kwargs):
    """tqdm over `iterable`: a bar on a terminal (tqdm's disable=None: off when its stream, stderr,
    is not a TTY), none with --quiet, under CI or on a rank other than 0."""
    hidden = _STATE["quiet"] or _STATE["rank"] or under_ci()
    return tqdm(iterable, **{**kwargs, "disable": True if hidden else None})
