"""The import contracts in ``.importlinter`` hold, and they do catch a forbidden import."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import neurofuse

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
PACKAGE = Path(neurofuse.__file__).resolve().parent


def _lint(pythonpath):
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        if os.environ.get("CI"):
            pytest.fail("import-linter is not installed; CI must check the import contracts.")
        pytest.skip("import-linter is not installed (pip install -e '.[test]').")
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(exe), "--config", str(CONFIG), "--no-cache"], cwd=pythonpath,
                          env=env, capture_output=True, text=True, timeout=300)


def test_contracts_kept():
    res = _lint(PACKAGE.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize("module, statement, contract", [
    # A shared layer importing a system.
    ("physics/hrf.py", "from neurofuse.systems.joint import model as _m", "Layers"),
    # The data layer importing the evaluation on top.
    ("data/merge/write.py", "import neurofuse.evaluation.metrics as _m", "Layers"),
    # Preprocessing (below the dataset loaders that call it) importing the data layer.
    ("preprocessing/fmri.py", "import neurofuse.data.store as _m", "Layers"),
    # Two modules of one independent layer importing each other.
    ("stats.py", "import neurofuse.anatomy.cortex as _m", "Layers"),
    # A second system importing the first.
    ("systems/other/__init__.py", "from neurofuse.systems.joint import heads as _m",
     "No system imports another system"),
])
def test_contracts_catch_a_forbidden_import(tmp_path, module, statement, contract):
    copy = tmp_path / "neurofuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.parent.mkdir(exist_ok=True)
    old = target.read_text() if target.exists() else ""
    target.write_text(old + f"\n{statement}  # forbidden\n")
    res = _lint(tmp_path)
    assert res.returncode != 0, res.stdout
    assert f"{contract}" in res.stdout and "BROKEN" in res.stdout


def test_test_file_names_are_unique():
    """pytest imports test files by basename (no __init__.py): two of one name cannot both
    be collected, so a clash stops the whole suite."""
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert not [n for n, k in names.items() if k > 1], names.most_common(3)
