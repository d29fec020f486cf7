"""Regenerate the Python stubs from protos/ into services/ (committed; CI fails on a diff).

Usage: python scripts/gen_protos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"


def generate(out: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc  # type: ignore[import-untyped]

    include = Path(grpc_tools.__file__).parent / "_proto"
    # protos/google/ holds vendored googleapis definitions (field_behavior): their Python
    # modules come with googleapis-common-protos, so only docfactory's own are generated.
    files = sorted(
        p.relative_to(PROTOS).as_posix()
        for p in PROTOS.rglob("*.proto")
        if not p.relative_to(PROTOS).as_posix().startswith("google/")
    )
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for f in files:
        pkg_dir = out / Path(f).parent
        init = pkg_dir / "__init__.py"
        if not init.exists():
            init.write_text(
                '"""Generated protobuf stubs (do not edit; run scripts/gen_protos.py)."""\n'
            )
        written.extend(sorted(pkg_dir.glob("*_pb2*.py*")))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "services")
    ns = parser.parse_args()
    for p in generate(ns.out):
        print(p.relative_to(ns.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
