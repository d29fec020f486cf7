"""What other packages may rely on from governance besides its gRPC API and its in-process
interfaces (``gate``, ``audit``, ``reviews``): lookups answered by the policy file without
handing out the policy model itself.

- :func:`object_classification`: the default classification of an object of a bucket
  (``object_classifications``, longest prefix wins), for bulk ingestion (docfactory.jobs). The
  file is parsed once per version of it (re-read when its size or modification time changes),
  not once per object.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from docfactory.governance.policy import Policy

__all__ = ["object_classification"]


def object_classification(policy_path: str | os.PathLike[str], bucket: str, key: str) -> int:
    """The classification rank the policy at ``policy_path`` gives ``bucket``/``key``."""
    path = Path(policy_path)
    try:
        st = path.stat()
    except OSError:
        return Policy.load(path).classification_for_object(bucket, key)  # its own error
    return _policy(str(path), st.st_mtime_ns, st.st_size).classification_for_object(bucket, key)


@lru_cache(maxsize=8)
def _policy(path: str, mtime_ns: int, size: int) -> Policy:
    return Policy.load(path)
