"""Every runtime dependency that pyproject.toml lists is imported by the installed code (lgdiff/, cli/):
a dependency only the test suite uses belongs in the ``test`` extra, and one nothing uses belongs nowhere."""

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules(root: Path, *packages: str) -> set[str]:
    """The top-level module of every ``import`` / ``from ... import`` (absolute) in the packages' sources."""
    found = set()
    for package in packages:
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_lgdiff():
    listed = {normalise(re.match(r"[A-Za-z0-9_.-]+", spec).group(0))
              for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    owners = importlib.metadata.packages_distributions()  # top-level module -> distributions that install it
    used = {normalise(dist) for module in imported_top_level_modules(ROOT, "lgdiff", "cli") for dist in owners.get(module, [])}
    assert listed <= used, (f"runtime dependencies never imported by lgdiff/ or cli/: {sorted(listed - used)}; "
                            f"use them, move them to an extra, or drop them")
    assert {"torch", "numpy", "attrs", "click"} <= listed  # the scan sees what it should


def test_the_scan_finds_absolute_imports_only(tmp_path):
    # the test's own helper: plain and from-imports count, relative imports do not
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("import a.b\nfrom c.d import e\nfrom . import f\nfrom .g import h\n")
    assert imported_top_level_modules(tmp_path, "pkg") == {"a", "c"}
