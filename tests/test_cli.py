"""Every command answers --help with an example, through its installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("argv", [
    ["dav-build", "--help"],
    ["dav-filter", "--help"],
    ["dav-filter", "sweep", "--help"],
    ["dav-filter", "apply", "--help"],
    ["dav-filter", "report", "--help"],
    ["dav-train", "--help"],
    ["dav-train", "eval", "--help"],
    ["dav-render", "--help"],
])
def test_help_has_an_example(argv):
    exe = BIN / argv[0]
    assert exe.is_file(), f"{exe}: console script not installed (pip install -e .)"
    out = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    assert "Example" in out.stdout or "example" in out.stdout, out.stdout


def test_bad_arguments_give_a_usage_error(tmp_path):
    out = subprocess.run([str(BIN / "dav-train"), str(tmp_path / "missing"), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "does not exist" in out.stderr
