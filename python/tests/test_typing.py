"""The type stubs: `mypy --strict` accepts the package and a typed use of it (and refuses a
wrong one), and `stubtest` finds the stubs true to the compiled module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

pytest.importorskip("mypy")


def mypy(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run outside the source tree, so that mypy sees the installed package.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "mypy-cache"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )


def test_mypy_strict_accepts_the_package_and_a_typed_use(tmp_path):
    usage = tmp_path / "usage.py"
    usage.write_text((HERE / "typing_usage.py").read_text())
    r = mypy(tmp_path, "-p", "chasync")
    assert r.returncode == 0, r.stdout + r.stderr
    r = mypy(tmp_path, str(usage))
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_refuses_a_wrong_use(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import chasync\n"
        "ins = chasync.Inserter('http://127.0.0.1:8123', 't', max_rows='many')\n"
        "n: int = chasync.SyncInserter('http://127.0.0.1:8123', 't').flush()\n"
    )
    r = mypy(tmp_path, str(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'bad.py:2: error: Argument "max_rows"' in r.stdout, r.stdout
    assert "bad.py:3: error" in r.stdout, r.stdout


def test_stubtest_finds_the_stubs_true_to_the_module(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "chasync"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
