"""The ``--smoke`` mode shared by the example scripts (not part of the library API).

A smoke run takes the same code path as the default ("laptop") run, end to end, at sizes that take seconds on one
core. It never writes into the repository: its work directory is a fresh temporary directory unless ``--work`` is
given, and models it ships go under that work directory.
"""

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODELS = REPO / "lgdiff" / "models"

SMOKE_HELP = ("smoke test: the same stages end to end at tiny sizes (seconds on one core); the work directory "
              "defaults to a fresh temporary directory and nothing is written into the repository")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default."""


def parse_sized(parser: argparse.ArgumentParser, sizes: dict[str, object], *, smoke: bool) -> argparse.Namespace:
    """Add ``--smoke`` (its help lists ``sizes``) and parse: with ``--smoke`` the ``sizes`` are the defaults and
    explicit sizes are capped at them (a documented command plus ``--smoke`` stays a smoke run)."""
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_HELP}; sizes: "
                        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sizes.items()))
    if smoke:
        parser.set_defaults(**sizes)
    args = parser.parse_args()
    if smoke:
        for name, size in sizes.items():
            setattr(args, name, min(getattr(args, name), size))
    return args


def wants_smoke(argv: Sequence[str]) -> bool:
    """Whether ``--smoke`` is on the command line (read before the full parser, to pick its defaults)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--smoke", action="store_true")
    return pre.parse_known_args(list(argv))[0].smoke


def work_and_dest(parser: argparse.ArgumentParser, work: Path | None, dest: Path | None, *, smoke: bool,
                  default_work: Path) -> tuple[Path, Path]:
    """The work directory and where ``ship`` writes.

    A full run: ``--work`` (default ``default_work``) and ``--dest`` (default lgdiff/models). A smoke run: ``--work``
    (default a fresh temporary directory; not inside the repository) and ``--dest`` (default ``WORK/models``), which
    must lie under the work directory; anything else is a usage error, raised before anything is created.
    """
    if not smoke:
        return (default_work if work is None else work), (SHIPPED_MODELS if dest is None else dest)
    if work is not None and work.resolve().is_relative_to(REPO):
        parser.error(f"--smoke never writes into the repository; got --work {work} inside {REPO}. "
                     f"Leave --work out (a fresh temporary directory) or choose one outside the checkout")
    if dest is not None and (work is None or not dest.resolve().is_relative_to(work.resolve())):
        where = "a fresh temporary directory" if work is None else str(work)
        parser.error(f"--smoke ships models only under its work directory ({where}); got --dest {dest}. "
                     f"Leave --dest out (it defaults to WORK/models) or give a --work that contains it")
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="lgdiff-smoke-"))
        print(f"smoke run in {work}", flush=True)
    return work, (work / "models" if dest is None else dest)


def ensure_checkpoint(parser: argparse.ArgumentParser, work: Path, model: str, *, smoke: bool,
                      train: Callable[[], None]) -> None:
    """Before ``ship``: a full run needs ``train --model MODEL`` to have run (else a usage error); a smoke run
    calls ``train()`` to make what it ships."""
    if (work / f"{model}.ckpt.safetensors").exists():
        return
    if not smoke:
        parser.error(f"no checkpoint {work / f'{model}.ckpt.safetensors'} to ship: run "
                     f"'train --work {work} --model {model}' first")
    train()
