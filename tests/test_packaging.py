"""The package as users get it: a wheel carries the bundled zoo (package data) and py.typed, and an
installed wheel finds its models without the source checkout (issue 12 item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_the_bundled_zoo_and_finds_it_when_installed(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("restorekit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = sorted(p.name for p in (ROOT / "weights").iterdir() if p.suffix in (".json", ".safetensors"))
    assert {f"restorekit/weights/{n}" for n in bundled} <= names
    assert "restorekit/py.typed" in names

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)  # a wheel is an archive of the installed layout
    code = ("import restorekit.zoo as z; from pathlib import Path; "
            "print(Path(z.__file__).parent.parent); print(','.join(e.card.name for e in z.entries()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTOREKIT_")}
    env.update(PYTHONPATH=str(target), RESTOREKIT_WEIGHTS=str(tmp_path / "user"))
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    where, models = found.stdout.split()
    assert Path(where) == target  # the wheel's copy, not the checkout
    assert models.split(",") == sorted(Path(n).stem for n in bundled if n.endswith(".json"))
