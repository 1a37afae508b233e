#!/usr/bin/env python3
"""Print the config reference table of README.md from the schema (the one home of defaults).

    python scripts/config_reference.py            # print the Markdown table
    python scripts/config_reference.py --check README.md   # exit 1 if the README's copy is stale
"""
from __future__ import annotations

import argparse
import sys

from linclf.config import Config, schema_keys, to_dict

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _default(path: str) -> str:
    value = to_dict(Config())
    for part in path.split("."):
        value = value[part]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != [] else "[]"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def table() -> str:
    """The Markdown table: key, default, allowed values, meaning."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for path, spec in schema_keys().items():
        if spec.choices:
            allowed = " \\| ".join(spec.choices)
        else:
            allowed = {"int": "integer", "float": "number", "bool": "true/false", "str": "string",
                       "list[str]": "list of strings"}[spec.kind]
            bounds = []
            if spec.lo is not None:
                bounds.append(f"{'>' if spec.lo_open else '≥'} {_num(spec.lo)}")
            if spec.hi is not None:
                bounds.append(f"{'<' if spec.hi_open else '≤'} {_num(spec.hi)}")
            if bounds:
                allowed += " " + ", ".join(bounds)
        if spec.nullable:
            allowed += " or null"
        rows.append(f"| `{path}` | `{_default(path)}` | {allowed} | {spec.help} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="README", help="compare with the table between the markers in README")
    args = parser.parse_args(argv)
    text = table()
    if not args.check:
        print(text)
        return 0
    readme = open(args.check, encoding="utf-8").read()
    try:
        current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    except IndexError:
        print(f"{args.check} has no {BEGIN} ... {END} section", file=sys.stderr)
        return 1
    if current != text:
        print(f"{args.check}: the config reference is stale; regenerate it with scripts/config_reference.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
