"""The wheel under test (scripts/test-python.sh installs it from dist/ into a fresh venv): the
package comes from it, its tag is abi3 + manylinux_2_28, and its native module is stripped and
needs nothing newer than glibc 2.28."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import chasync
import chasync._native

WHEEL = os.environ.get("CHASYNC_WHEEL")
pytestmark = pytest.mark.skipif(not WHEEL, reason="runs against the wheel (scripts/test-python.sh)")


def test_the_package_under_test_is_the_installed_wheel():
    assert WHEEL is not None
    dist = metadata.distribution("chasync")
    assert dist.version == chasync.__version__
    site = Path(str(dist.locate_file(""))).resolve()
    assert Path(chasync.__file__).resolve().is_relative_to(site)
    assert Path(chasync._native.__file__).resolve().is_relative_to(site)
    assert Path(sys.prefix).resolve() in Path(chasync.__file__).resolve().parents
    # Installed from the wheel's file: the same files (RECORD) as in the wheel.
    with zipfile.ZipFile(WHEEL) as z:
        in_wheel = {n for n in z.namelist() if not n.endswith("/")}
    installed = {str(f) for f in dist.files or []}
    assert {n for n in in_wheel if n.startswith("chasync/")} <= installed
    for name in ("chasync/py.typed", "chasync/_native.pyi", "chasync/_sync.py"):
        assert name in in_wheel, name


def test_the_tag_is_abi3_and_manylinux_2_28():
    name = Path(WHEEL or "").name
    assert re.fullmatch(r"chasync-[0-9.]+-cp310-abi3-manylinux_2_28_x86_64\.whl", name), name
    text = metadata.distribution("chasync").read_text("WHEEL") or ""
    assert "Tag: cp310-abi3-manylinux_2_28_x86_64" in text, text
    assert chasync._native.__file__.endswith(".abi3.so")


def readelf(*args: str) -> str:
    tool = shutil.which("readelf")
    if tool is None:
        pytest.fail("readelf (binutils) is needed to inspect the extension")
    return subprocess.run(
        [tool, "-W", *args, chasync._native.__file__], check=True, capture_output=True, text=True
    ).stdout


def test_the_extension_is_stripped():
    sections = re.findall(r"\]\s+(\.\S+)", readelf("-S"))
    assert ".text" in sections  # the parse worked
    assert ".symtab" not in sections, sections
    assert not [s for s in sections if s.startswith(".debug")], sections
    size = Path(chasync._native.__file__).stat().st_size
    assert size < 20 << 20, f"{size} bytes: not stripped?"


def test_the_extension_needs_no_glibc_newer_than_2_28():
    versions = {
        tuple(int(x) for x in v.split("."))
        for v in re.findall(r"@GLIBC_([0-9.]+)", readelf("--dyn-syms"))
    }
    assert versions, "no versioned glibc symbols found"
    assert max(versions) <= (2, 28), sorted(versions)
    # Only the libraries every manylinux system has.
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d")))
    allowed = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
               "libgcc_s.so.1", "ld-linux-x86-64.so.2"}
    assert needed and needed <= allowed, needed
