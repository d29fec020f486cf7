"""Executes notebooks/quickstart.ipynb end to end with nbclient, on this interpreter."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def _kernelspec_dir(base: Path) -> Path:
    """A private 'python3' kernelspec that runs exactly this interpreter (the venv's python),
    whatever kernelspecs are installed system-wide or per user."""
    spec = base / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (docfactory tests)",
                "language": "python",
            }
        )
    )
    return base


def _text(output: dict[str, object]) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data")
    if isinstance(data, dict):
        return str(data.get("text/plain", ""))
    return ""


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    jupyter_path = _kernelspec_dir(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    for name in list(os.environ):
        if name.startswith("DOCFACTORY_"):
            monkeypatch.delenv(name)
    services = str(ROOT / "services")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (services, os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")

    ksm = KernelSpecManager(kernel_dirs=[str(jupyter_path / "kernels")])
    assert ksm.get_kernel_spec("python3").argv[0] == sys.executable

    workdir = tmp_path / "run"
    workdir.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook with its outputs cleared"
    )

    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        kernel_manager_class=AsyncKernelManager,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.km = client.create_kernel_manager()
    client.km.kernel_spec_manager = ksm
    client.execute()

    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    text = "\n".join(_text(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "DOCUMENT_STATE_INDEXED" in text, text[-3000:]
    assert "inchangé : True" in text, text[-3000:]
    assert "Sources :" in text and "[1]" in text, text[-3000:]
    assert "guide-equipes-documentaires.md" in text, text[-3000:]
    assert "INVALID_ARGUMENT EMPTY_QUERY" in text, text[-3000:]
    assert "serveur arrêté" in text, text[-3000:]
