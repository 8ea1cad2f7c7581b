"""The examples a user copies run: dav-build's --help examples, and the code blocks of the
README and the format docs, on the demo dataset they are written for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLACEHOLDERS = ("/data", "/mnt")  # examples about the user's own data or cluster


def blocks(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (REPO / doc).read_text(), re.S)


def sh(cmd: str, cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cmd}\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def help_examples() -> list[str]:
    text = subprocess.run([str(BIN / "dav-build"), "--help"], capture_output=True, text=True, check=True).stdout
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("dav-build ")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory where the help examples ran, in order: the demo first."""
    cwd = tmp_path_factory.mktemp("user")
    examples = help_examples()
    assert examples[0] == "dav-build --demo --out demo-out"
    ran = 0
    for cmd in examples:
        if any(p in cmd for p in PLACEHOLDERS):
            continue
        out = sh(cmd, cwd)
        ran += 1
        assert "Token authentication" not in out and "build time" not in out, out  # no third-party banners
        if "--dry-run" in cmd:
            assert "dry run: nothing was written" in out and not (cwd / "demo-out" / "other").exists()
    assert ran >= 5
    assert (cwd / "scored.yaml").read_text().startswith("# dav-build")
    return cwd


@pytest.mark.slow
@pytest.mark.parametrize("doc", ["docs/dataset-format.md", "README.md", "docs/capture-format.md"])
def test_python_blocks_of_the_docs_run(workdir, doc, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(workdir / "hf-cache"))
    code = [b for b in blocks(doc, "python") if "from_pretrained" not in b]  # model examples: docs/training.md
    assert code
    for block in code:
        exec(compile(block, doc, "exec"), {"__name__": "__doc_example__"})
    for cmd in blocks(doc, "bash"):
        for line in cmd.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("dav-build") and not any(p in line for p in PLACEHOLDERS):
                sh(line, workdir)
