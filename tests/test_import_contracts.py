"""Import direction, checked by import-linter (contracts in .importlinter): core imports no
domain package; the console reaches the services only through their gRPC stubs; no package
imports another's internals (only its public modules: __init__, v1 stubs, client, contracts);
a _private module is imported by its own package only; no cycle between packages. And, which
import-linter cannot see: no module uses another package's _private names."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "services" / "docfactory"


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency (pyproject [dev]): scripts/install.sh"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    proc = subprocess.run(
        [exe, str(ROOT / ".importlinter")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
    for contract in ("internals are its own", "_private module", "no import cycle"):
        assert contract in proc.stdout


def _package(module: str) -> str:
    """``docfactory.governance.audit`` -> ``governance``; app.py, cli... are their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(path: Path) -> str:
    rel = path.relative_to(SOURCES.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_name_uses(importer: str, source: str) -> list[str]:
    """In module ``importer``: ``from docfactory.X... import _name`` (or from a _private module
    of X), or ``alias._name`` where ``alias`` is a name imported from X, when X is another
    package than the importer's."""
    home = _package(importer)
    tree = ast.parse(source, importer)
    found: list[str] = []
    foreign: dict[str, str] = {}  # local name -> what it is in another package
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("docfactory.") or _package(node.module) == home:
                continue
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{importer}:{node.lineno} from {node.module} (private module)")
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{importer}:{node.lineno} {node.module}.{alias.name}")
                else:
                    foreign[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("docfactory.") and _package(alias.name) != home:
                    foreign[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign
        ):
            found.append(f"{importer}:{node.lineno} {foreign[node.value.id]}.{node.attr}")
    return sorted(found, key=lambda f: int(f.split(" ", 1)[0].rsplit(":", 1)[1]))


def test_no_package_uses_another_packages_private_names() -> None:
    files = [p for p in SOURCES.rglob("*.py") if "_pb2" not in p.name]
    assert len(files) > 100
    problems = [
        use
        for path in files
        for use in private_name_uses(_module_of(path), path.read_text(encoding="utf-8"))
    ]
    assert problems == [], "\n".join(problems)


def test_private_name_check_sees_every_form() -> None:
    source = (
        "from docfactory.governance._sql import utc\n"
        "from docfactory.governance.audit import _to_record, AuditLog\n"
        "from docfactory.governance import audit\n"
        "from docfactory.measurement.usage import _rate\n"  # its own package: allowed
        "from docfactory.core.timeutil import utcnow\n"
        "audit._iso(None)\n"
        "AuditLog._lock_chain\n"
        "utcnow.__name__\n"  # dunder: not private
    )
    found = private_name_uses("docfactory.measurement.probe", source)
    assert [f.split(" ", 1)[1] for f in found] == [
        "from docfactory.governance._sql (private module)",
        "docfactory.governance.audit._to_record",
        "docfactory.governance.audit._iso",
        "docfactory.governance.audit.AuditLog._lock_chain",
    ]
