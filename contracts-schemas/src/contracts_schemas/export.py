"""Export every contract as JSON Schema into `contracts-schemas/schemas/`.

`python -m contracts_schemas.export` writes the files; `--check` fails when a committed
file is missing or a model breaks compatibility with the committed file of its version.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts_schemas.compat import breaking_changes
from contracts_schemas.registry import REGISTRY

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_of(type_name: str) -> dict[str, Any]:
    registration = REGISTRY[type_name]
    schema = registration.model.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:{type_name}"
    schema["x-topic"] = registration.topic
    return schema


def path_of(type_name: str, root: Path = SCHEMA_DIR) -> Path:
    return root / f"{type_name}.json"


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def problems_against_committed(root: Path = SCHEMA_DIR) -> dict[str, list[str]]:
    """For each contract: what is wrong against its committed schema file."""
    found: dict[str, list[str]] = {}
    for type_name in REGISTRY:
        path = path_of(type_name, root)
        if not path.exists():
            found[type_name] = [f"no committed schema at {path.name}; run the export"]
            continue
        problems = breaking_changes(json.loads(path.read_text()), schema_of(type_name))
        if problems:
            found[type_name] = problems
    return found


def write_all(root: Path = SCHEMA_DIR) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for type_name in REGISTRY:
        path = path_of(type_name, root)
        path.write_text(render(schema_of(type_name)))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    problems = problems_against_committed()
    if args.check:
        _report(problems)
        return 1 if problems else 0
    incompatible = {t: p for t, p in problems.items() if not p[0].startswith("no committed")}
    if incompatible:
        _report(incompatible)
        print("refusing to overwrite: bump schema_version for breaking changes", file=sys.stderr)
        return 1
    for path in write_all():
        print(path.relative_to(SCHEMA_DIR.parent))
    return 0


def _report(problems: dict[str, list[str]]) -> None:
    for type_name, found in problems.items():
        for problem in found:
            print(f"{type_name}: {problem}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
