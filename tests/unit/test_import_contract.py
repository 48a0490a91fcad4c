"""The import contract declared in pyproject.toml ([tool.importlinter]) holds, and breaks
when someone adds an upward import or an import circle: checked by running import-linter
itself, on the real tree and on a throw-away copy with the two faults added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # from the test extras


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the pyproject.toml in `root`, analysing the `sds` package there."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)


def test_the_tree_keeps_the_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_upward_import_and_a_circle_break_it():
    with tempfile.TemporaryDirectory(prefix="sds-contract-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "sds", root / "sds",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", root)
        # the client library reaching up into the FUSE mount
        (root / "sds/client/upward.py").write_text("import sds.fs.mount  # noqa\n")
        # two shared modules that need each other
        (root / "sds/common/circle_a.py").write_text("from sds.common import circle_b  # noqa\n")
        (root / "sds/common/circle_b.py").write_text("from sds.common import circle_a  # noqa\n")
        result = lint_imports(root)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "Contracts: 0 kept, 2 broken." in out
    assert "sds.client is not allowed to import sds.fs" in out
    assert "sds.client.upward -> sds.fs.mount" in out
    assert "No cycles are allowed in sds.common." in out
    assert "circle_" in out
