"""The README stays true: its opening commands, its config reference, the configs it names."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from linclf.config import load_config
from linclf.training.featurize import row_width

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


def test_the_synthetic_gradcheck_width_it_quotes_is_kmeans_yamls():
    quoted = re.search(r"e\.g\. (\d+) \+ 1 for\s+configs/kmeans\.yaml", README)
    assert quoted, "the README no longer quotes the width of configs/kmeans.yaml's rows"
    assert int(quoted.group(1)) == row_width(load_config(ROOT / "configs" / "kmeans.yaml"))


def test_no_command_help_shows_docstring_markup():
    from linclf.cli import cli

    for name, command in cli.commands.items():
        text = command.get_help(command.make_context(name, ["--help"], resilient_parsing=True))
        assert "``" not in text, f"linclf {name} --help shows reST markup: {text}"
