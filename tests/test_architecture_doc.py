"""docs/architecture.md's worked example is real: its family file, installed as one file, passes the
registry-wide contract tests and is usable by name (issue 12: "followed by a test family added in one file")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def example_family() -> str:
    """The one ```python block of the 'How to add a model family' section."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## How to add a model family", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the worked example must be exactly one python block"
    return blocks[0]


@pytest.fixture
def family_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "families"
    folder.mkdir()
    (folder / "srcnn.py").write_text(example_family())
    return folder


def _env(folder: Path) -> dict[str, str]:
    return {**os.environ, "RESTOREKIT_FAMILIES": str(folder), "OMP_NUM_THREADS": "1"}


def test_the_example_family_passes_the_contract_tests(family_dir):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "test_model_contract.py"), "-k", "srcnn"],
                            capture_output=True, text=True, env=_env(family_dir), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 4, result.stdout[-2000:]  # the contract ran on srcnn's configs


def test_the_example_family_is_usable_by_name(family_dir, tmp_path):
    code = ("import torch, restorekit\n"
            "from restorekit import models\n"
            "assert 'srcnn' in models.families()\n"
            "out = restorekit.restore(torch.rand(1, 12, 10), model='srcnn', scale=3, device='cpu')\n"
            "print(tuple(out.shape))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(family_dir),
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(1, 36, 30)"
