"""What other packages may rely on from governance besides its gRPC API and its in-process
interfaces (``gate``, ``audit``, ``reviews``): lookups answered by the policy file without
handing out the policy model itself.

- :func:`object_classification`: the default classification of an object of a bucket
  (``object_classifications``, longest prefix wins), for bulk ingestion (docfactory.jobs). The
  file is parsed once per version of it (re-read when its size or modification time changes),
  not once per object.
- :func:`model_refusal`: whether a use case lets document text go to a given generative model
  (its ``allowed_models`` and its ``pii`` policy), for dossier runs (docfactory.workflows).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from docfactory.governance.policy import Policy

__all__ = ["model_refusal", "object_classification"]


def object_classification(policy_path: str | os.PathLike[str], bucket: str, key: str) -> int:
    """The classification rank the policy at ``policy_path`` gives ``bucket``/``key``."""
    path = Path(policy_path)
    try:
        st = path.stat()
    except OSError:
        return Policy.load(path).classification_for_object(bucket, key)  # its own error
    return _policy(str(path), st.st_mtime_ns, st.st_size).classification_for_object(bucket, key)


def model_refusal(policy_path: str | os.PathLike[str], use_case: str, model: str) -> str:
    """Why ``use_case`` may not send document text to ``model``: ``"PII_POLICY"`` (the use
    case asks for personal-data handling: no text holding personal data goes to a model),
    ``"MODEL_NOT_ALLOWED"`` (not in its ``allowed_models``), or ``""`` when it may (also for a
    use case the policy does not know: the run was authorized under it already)."""
    uc = _current(Path(policy_path)).use_cases.get(use_case)
    if uc is None:
        return ""
    if uc.pii != "allow":
        return "PII_POLICY"
    if uc.allowed_models is not None and model not in uc.allowed_models:
        return "MODEL_NOT_ALLOWED"
    return ""


def _current(path: Path) -> Policy:
    try:
        st = path.stat()
    except OSError:
        return Policy.load(path)  # its own error
    return _policy(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _policy(path: str, mtime_ns: int, size: int) -> Policy:
    return Policy.load(path)
