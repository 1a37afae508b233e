"""The README stays true: its opening commands, its config reference, the configs it names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from linclf.config import load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    commands = [line.strip() for line in README.splitlines() if line.startswith("    pip install")]
    assert commands[:2] == ["pip install . && linclf train --config configs/softmax.yaml",
                            "pip install '.[test]' && python -m pytest"]


def test_config_reference_matches_the_schema():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check",
                        str(ROOT / "README.md")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    load_config(path)
