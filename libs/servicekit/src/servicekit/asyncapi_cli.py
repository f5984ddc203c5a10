"""Write or check the services' AsyncAPI documents in `contracts-schemas/asyncapi/`.

    python -m servicekit.asyncapi_cli contracts loyalty notifier          # write
    python -m servicekit.asyncapi_cli --check contracts loyalty notifier  # drift: exit 1

Each argument names a `StreamSpec` as `module[:attribute]`; a bare name `svc` stands for
`svc.entrypoints.stream:STREAM`. Nothing connects to Kafka or PostgreSQL. `--check` fails
when a document is missing, differs from what its spec generates, or has no spec (a
document left behind by a removed service).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import contracts_schemas

from servicekit.asyncapi import StreamSpec, document, render

ASYNCAPI_DIR = Path(contracts_schemas.__file__).resolve().parents[2] / "asyncapi"
DEFAULT_MODULE = "{}.entrypoints.stream"
DEFAULT_ATTRIBUTE = "STREAM"


def load_spec(reference: str) -> StreamSpec:
    """`module:attribute`, `module` (attribute STREAM) or `svc` (svc.entrypoints.stream)."""
    module_name, colon, attribute = reference.partition(":")
    if not colon and "." not in module_name:
        module_name = DEFAULT_MODULE.format(module_name)
    spec = getattr(importlib.import_module(module_name), attribute or DEFAULT_ATTRIBUTE)
    if not isinstance(spec, StreamSpec):
        raise TypeError(f"{reference} is a {type(spec).__name__}, not a StreamSpec")
    return spec


def path_of(spec: StreamSpec, root: Path = ASYNCAPI_DIR) -> Path:
    return root / f"{spec.service}.json"


def drift(specs: list[StreamSpec], root: Path = ASYNCAPI_DIR) -> list[str]:
    """What is wrong with the committed documents under `root` (empty: nothing)."""
    found = []
    for spec in specs:
        path = path_of(spec, root)
        if not path.exists():
            found.append(f"{path.name}: missing; run python -m servicekit.asyncapi_cli")
        elif path.read_text() != render(document(spec)):
            found.append(
                f"{path.name}: differs from its spec; run python -m servicekit.asyncapi_cli"
            )
    expected = {path_of(spec, root) for spec in specs}
    found += [
        f"{path.name}: no service describes it; delete it"
        for path in sorted(root.glob("*.json"))
        if path not in expected
    ]
    return found


def write(specs: list[StreamSpec], root: Path = ASYNCAPI_DIR) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        path = path_of(spec, root)
        path.write_text(render(document(spec)))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.asyncapi_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="module[:attribute] or svc")
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    parser.add_argument("--dir", type=Path, default=ASYNCAPI_DIR, help="documents' folder")
    args = parser.parse_args(argv)
    specs = [load_spec(reference) for reference in args.specs]
    if args.check:
        problems = drift(specs, args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in write(specs, args.dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
