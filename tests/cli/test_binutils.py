"""Our `ar` passes archive calls through to GNU binutils' ar."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ar_cli.binutils import find_system_ar, is_ours

AR = shutil.which("ar")


def test_is_ours():
    assert is_ours([]) and is_ours(["quantize", "--model", "x"]) and is_ours(["--help"]) and is_ours(["list"])
    assert not is_ours(["rcs", "lib.a", "x.o"]) and not is_ours(["--version"]) and not is_ours(["t", "lib.a"])
    assert not is_ours(["--plugin", "p.so", "t", "lib.a"])


@pytest.mark.skipif(not shutil.which("gcc") or not Path("/usr/bin/ar").exists(), reason="needs gcc and binutils")
def test_builds_and_lists_static_library(tmp_path):
    (tmp_path / "x.c").write_text("int x(void) { return 42; }\n")
    subprocess.run(["gcc", "-c", "x.c"], cwd=tmp_path, check=True)
    our_ar = [sys.executable, "-m", "ar_cli.main"]
    r = subprocess.run([*our_ar, "rcs", "libx.a", "x.o"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*our_ar, "t", "libx.a"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["x.o"]
    sysar = subprocess.run(["/usr/bin/ar", "t", "libx.a"], cwd=tmp_path, capture_output=True, text=True)
    assert sysar.stdout == r.stdout
    r = subprocess.run([*our_ar, "--version"], capture_output=True, text=True)
    assert "GNU ar" in r.stdout
    bad = subprocess.run([*our_ar, "t", "missing.a"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == subprocess.run(["/usr/bin/ar", "t", "missing.a"], cwd=tmp_path).returncode != 0


def test_console_script_on_path_passes_through(tmp_path):
    """The installed `ar` (first on PATH in our environment) still reaches binutils."""
    if AR is None or find_system_ar() is None:
        pytest.skip("no ar on PATH")
    r = subprocess.run([AR, "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "GNU ar" in r.stdout


def test_no_system_ar_is_clear_error(tmp_path, monkeypatch):
    env = {**os.environ, "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "ar_cli.main", "t", "lib.a"], capture_output=True, text=True, env=env)
    assert r.returncode == 127 and "no GNU binutils `ar`" in r.stderr
