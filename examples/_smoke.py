"""The ``--smoke`` mode shared by the example scripts (not part of the library API).

A smoke run takes the same code path as the default ("laptop") run, end to end, at sizes that take seconds on one
core. It never writes into the repository: its work directory is a fresh temporary directory unless ``--work`` is
given, and models it ships go under that work directory.
"""

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPO / "lgdiff" / "models"

SMOKE_HELP = ("smoke test: the same stages end to end at tiny sizes (seconds on one core); the work directory "
              "defaults to a fresh temporary directory and nothing is written into the repository")


def wants_smoke(argv: Sequence[str]) -> bool:
    """Whether ``--smoke`` is on the command line (read before the full parser, to pick its defaults)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--smoke", action="store_true")
    return pre.parse_known_args(list(argv))[0].smoke


def work_dir(work: Path | None, *, smoke: bool, default: Path) -> Path:
    """``--work`` if given; otherwise ``default`` for a full run, a fresh temporary directory for a smoke run."""
    if work is not None:
        return work
    if not smoke:
        return default
    work = Path(tempfile.mkdtemp(prefix="lgdiff-smoke-"))
    print(f"smoke run in {work}", flush=True)
    return work


def dest_dir(parser: argparse.ArgumentParser, dest: Path | None, work: Path, *, smoke: bool) -> Path:
    """Where ``ship`` writes: ``--dest``, by default lgdiff/models; a smoke run writes only under ``--work``
    (by default ``work/models``) and refuses any other ``--dest``."""
    if not smoke:
        return SHIPPED_MODELS if dest is None else dest
    if dest is None:
        return work / "models"
    if not dest.resolve().is_relative_to(work.resolve()):
        parser.error(f"--smoke ships models only under the work directory {work}; got --dest {dest}. "
                     f"Leave --dest out (it defaults to {work / 'models'}) or choose a folder under --work")
    return dest
