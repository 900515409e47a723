"""Every command in README.md and docs/*.md runs, so the docs cannot rot.

The fenced ``bash`` and ``python`` blocks of each page are run in order, in one scratch directory per page
(a page is a workflow: later blocks read what earlier ones wrote), at small settings:

- ``lgdiff <cmd> ...`` runs as ``python -m cli.main <cmd> ...`` with the sizes in ``QUICK`` (records, chains,
  steps) replacing the page's, so a 10-minute command takes seconds and still runs every code path;
- ``python examples/X.py ...`` gets ``--smoke`` and ``python benchmarks/X.py ...`` gets ``--quick``;
- ``torchrun ... <script or -m module> ...`` runs as ``python -m torch.distributed.run ...``, with the same
  rules applied to what it launches;
- ``pip install`` lines are what CI itself runs before the tests, and ``python -m pytest`` is this suite:
  both are skipped;
- paths under ``/tmp/`` are moved into the scratch directory, and glob patterns expand there as in bash;
- a block preceded by ``<!-- docs-test: skip: REASON -->`` is not run (REASON is required: e.g. it needs CUDA);
- any other command fails the test: teach this file about it rather than leaving it untested.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip:\s*(\S[^>]*?)\s*-->\s*$")

# lgdiff subcommand -> options set (added or replaced) for the small run; None removes the option
QUICK: dict[str, dict[str, str | None]] = {
    "generate": {"--n": "2", "--chains": "2", "--therm": "2", "--every": "1"},
    "sample": {"--n": "2", "--chains": "2", "--steps": "4"},
    "train": {"--steps": "2", "--epochs": None, "--batch-size": "4"},
}
TIMEOUT = 300


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """``(language, code, skip reason)`` of every fenced block, in order."""
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        skip = SKIP.search(before[-1]) if before else None
        out.append((m.group(1), m.group(2), skip.group(1) if skip else None))
    return out


def commands(code: str) -> list[str]:
    """Shell commands of a bash block: continuations joined, comments dropped, ``&&`` chains split."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        cmd: list[str] = []
        for w in words:
            if w == "&&":
                out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
        out.append(cmd)
    return [shlex.join(c) for c in out if c]


def _with_options(args: list[str], options: dict[str, str | None]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        if name in options:
            i += 1 if "=" in args[i] or i + 1 >= len(args) or args[i + 1].startswith("--") else 2
            continue
        out.append(args[i])
        i += 1
    for name, value in options.items():
        if value is not None:
            out += [name, value]
    return out


def _python_target(args: list[str]) -> list[str]:
    """Arguments of ``python ...`` (script or -m module), with the smoke flags."""
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "cli.main" and rest:
            separator = rest[:1] if rest[0] == "--" else []  # torchrun needs `--` before the subcommand
            return ["-m", "cli.main", *separator, *_lgdiff(rest[len(separator):])]
        return ["-m", module, *rest]
    script = args[0]
    if script.startswith(("examples/", "benchmarks/")):
        flag = "--smoke" if script.startswith("examples/") else "--quick"
        return [str(ROOT / script), *args[1:], flag]
    raise AssertionError(f"docs run `python {shlex.join(args)}`: only examples/, benchmarks/ and -m are known")


# gauge MAALA sampling also gets a short chain (phi4 and --method sde refuse these options)
QUICK_GAUGE_MAALA = {"--therm": "2", "--every": "1"}


def _is_gauge_maala(args: list[str]) -> bool:
    joined = " ".join(args)
    return (args[:1] == ["sample"] and re.search(r"--theory[ =](u1|su2|su3)\b", joined) is not None
            and re.search(r"--method[ =]sde\b", joined) is None)


def _lgdiff(args: list[str]) -> list[str]:
    sub = args[0] if args else ""
    return _with_options(args, {**QUICK.get(sub, {}), **(QUICK_GAUGE_MAALA if _is_gauge_maala(args) else {})})


def translate(command: str, scratch: Path) -> tuple[list[str], dict[str, str]] | None:
    """The argv and extra environment to run ``command`` with, or None for a command the suite skips."""
    words = []
    for w in shlex.split(command):
        w = str(scratch / w[len("/tmp/"):]) if w.startswith("/tmp/") else w
        matches = sorted(str(m.relative_to(scratch)) for m in scratch.glob(w)) if set(w) & set("*?[") else []
        words += matches or [w]  # like bash: a pattern that matches nothing stays as it is
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    head, args = words[0], words[1:]
    if head == "pip" or (head == "python" and args[:2] == ["-m", "pip"]):
        return None
    if head == "python" and args[:2] == ["-m", "pytest"]:
        return None
    if head == "lgdiff":
        return [sys.executable, "-m", "cli.main", *_lgdiff(args)], env
    if head == "python":
        return [sys.executable, *_python_target(args)], env
    if head == "torchrun":
        i = 0
        while i < len(args) and args[i].startswith("--"):
            i += 1 if "=" in args[i] else 2
        launcher, target = args[:i], args[i:]
        if target[:1] == ["lgdiff"]:
            target = ["-m", "cli.main", *_lgdiff(target[1:])]
        else:
            target = _python_target(target)
        return [sys.executable, "-m", "torch.distributed.run", *launcher, *target], env
    raise AssertionError(f"docs run `{command}`: unknown command; teach tests/docs/test_docs.py about it")


def run(argv: list[str], env: dict[str, str], cwd: Path, where: str) -> None:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (
        f"{where} failed (exit {proc.returncode}): {shlex.join(argv)}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )


def test_translation_rules(tmp_path):
    argv, env = translate("OMP_NUM_THREADS=1 lgdiff generate --theory phi4 --L 8 --n 1024 --chains=64 --out x", tmp_path)
    assert argv[1:] == ["-m", "cli.main", "generate", "--theory", "phi4", "--L", "8", "--out", "x",
                        "--n", "2", "--chains", "2", "--therm", "2", "--every", "1"]
    assert env == {"OMP_NUM_THREADS": "1"}
    argv, _ = translate("python examples/toy_model.py --out /tmp/a/b.png", tmp_path)
    assert argv[1:] == [str(ROOT / "examples/toy_model.py"), "--out", str(tmp_path / "a/b.png"), "--smoke"]
    assert translate("pip install -e '.[test]'", tmp_path) is None
    argv, _ = translate("torchrun --nproc-per-node 2 -m cli.main -- train --data d --steps 2000", tmp_path)
    assert argv[1:] == ["-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "cli.main", "--", "train",
                        "--data", "d", "--steps", "2", "--batch-size", "4"]
    argv, _ = translate("lgdiff sample --theory su3 --L 6 --therm 4000", tmp_path)
    assert argv[3:] == ["sample", "--theory", "su3", "--L", "6", "--n", "2", "--chains", "2", "--steps", "4",
                        "--therm", "2", "--every", "1"]
    argv, _ = translate("lgdiff sample --theory u1 --L 4 --method sde", tmp_path)
    assert "--therm" not in argv
    assert commands("a --x 1 \\\n  --y 2  # note\n\nb && c") == ["a --x 1 --y 2", "b", "c"]
    with pytest.raises(AssertionError, match="unknown command"):
        translate("rm -rf /", tmp_path)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_commands_run(page, tmp_path):
    for i, (language, code, skip) in enumerate(blocks(page)):
        where = f"{page.name} block {i + 1}"
        if skip is not None or language not in ("bash", "sh", "python"):
            continue
        if language == "python":
            script = tmp_path / f"block{i + 1}.py"
            script.write_text(code)
            run([sys.executable, str(script)], {}, tmp_path, where)
            continue
        for command in commands(code):
            translated = translate(command, tmp_path)
            if translated is not None:
                run(*translated, tmp_path, f"{where}: `{command}`")
    if not any(lang in ("bash", "sh", "python") and skip is None for lang, _, skip in blocks(page)):
        pytest.skip(f"{page.name} has no runnable blocks")
