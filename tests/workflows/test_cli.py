"""``docfactory dossier run FLOW FILE... --json`` on the embedded default, then ``decide``
and ``list`` (separate processes: the run waiting for sign-off is picked up again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.workflows import dossiers


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
    env["DOCFACTORY_DATA_DIR"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", "docfactory.cli", *args],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_dossier_run_json_then_decide(tmp_path: Path) -> None:
    files = dossiers.financement(tmp_path / "files", kbis_siren=dossiers.OTHER_SIREN)
    data = tmp_path / "data"
    res = _cli(data, "dossier", "run", "financement", *map(str, files), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert {"documents", "checks", "note", "state"} <= set(out)
    assert out["state"] == "AWAITING_SIGNOFF"
    types = {d["type"] for d in out["documents"]}
    assert types == {"demande", "kbis", "rib", "budget", "etats_financiers"}
    kbis = next(d for d in out["documents"] if d["type"] == "kbis")
    siren = kbis["fields"]["siren"]
    assert siren["value"] == dossiers.OTHER_SIREN
    assert siren["evidence"]["quote"] == dossiers.OTHER_SIREN
    assert siren["evidence"]["document_id"] == kbis["document_id"]
    checks = {c["rule"]: c for c in out["checks"]}
    assert checks["siren-demande-kbis"]["outcome"] == "FAILED"
    assert set(checks["siren-demande-kbis"]["fields"]) == {"demande.siren", "kbis.siren"}
    assert "NON CONFORME" in out["note"] and "[1]" in out["note"]

    res = _cli(data, "dossier", "decide", out["run"], "reject", "--comment", "SIREN", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    decided = json.loads(res.stdout)
    assert decided["state"] == "REJECTED"
    assert decided["documents"] == [] and decided["note"] == ""  # nothing released

    res = _cli(data, "dossier", "list", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["flow"], r["state"]) for r in rows] == [("financement@1", "REJECTED")]
