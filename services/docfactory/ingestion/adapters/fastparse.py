"""Fast paths of :mod:`docfactory.ingestion.adapters.parser`: the same elements, sooner.

Where parsing time went (``python -X importtime`` and cProfile of a fresh process parsing Code
civil Markdown articles):

- ``spacy.load`` imports every ``spacy_factories`` entry point of the environment before it
  builds a pipeline; presidio-analyzer registers one that imports ``transformers.pipelines``
  (tens of seconds cold) although the French pipeline never uses it. :func:`load_pipeline`
  skips the entry-point factories while it loads (spaCy's own factories are registered by
  spaCy itself).
- ``import spacy`` imports thinc, which imports torch when it is installed (seconds) only to
  offer PyTorch layers that the small spaCy pipelines do not use. :func:`import_spacy` keeps
  torch out of that import (for the importing thread only).
- the NLP pipeline was loaded before every first parse, for every format. It is needed only by
  unstructured's text classifiers (title / narrative text / list item heuristics: sentence
  count, verbs). :func:`defer_nlp` installs the loader lazily, so a CSV, TSV or JSON file never
  pays for it and the other formats pay once per process, on the first paragraph that needs it.
- ``unstructured.partition.auto.partition`` detects the file type a second time (libmagic)
  before it calls the format's partitioner. :func:`partition` calls the partitioner of the
  formats below directly, with the arguments ``partition.auto`` passes, so the elements are the
  same objects built by the same code (``tests/ingestion/test_fastparse.py`` compares elements
  and chunks, ids and text, with the ``partition.auto`` path on the formats corpus and on Code
  civil articles).
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
from collections.abc import Callable
from typing import Any

# unstructured FileType name -> (module, function) of its partitioner, for the formats parsed
# without partition.auto (their partitioners need no layout model, OCR or converter).
FAST_PARTITIONERS: dict[str, tuple[str, str]] = {
    "TXT": ("unstructured.partition.text", "partition_text"),
    "MD": ("unstructured.partition.md", "partition_md"),
    "HTML": ("unstructured.partition.html", "partition_html"),
    "CSV": ("unstructured.partition.csv", "partition_csv"),
    "TSV": ("unstructured.partition.tsv", "partition_tsv"),
    "JSON": ("unstructured.partition.json", "partition_json"),
}
# Formats whose elements never go through unstructured's NLP classifiers.
NO_NLP = frozenset({"CSV", "TSV", "JSON"})

_LOCK = threading.RLock()
_DEFERRED = False


class _NoTorchInThisThread(importlib.abc.MetaPathFinder):
    """Makes ``import torch`` fail in one thread only (the one importing spaCy)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if threading.get_ident() == self.thread and name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def import_spacy() -> Any:
    """``import spacy`` without importing torch through thinc.

    thinc tries ``import torch`` once, at import, to offer PyTorch layers; the small spaCy
    pipelines used here never need them. The import fails for the importing thread only, and
    only while spaCy is first imported: another thread importing torch meanwhile gets it (the
    finder is consulted only by this thread, and not at all once torch is loaded)."""
    if "spacy" in sys.modules:
        return sys.modules["spacy"]
    with _LOCK:
        finder = _NoTorchInThisThread()
        sys.meta_path.insert(0, finder)
        try:
            return importlib.import_module("spacy")
        finally:
            sys.meta_path.remove(finder)


def load_pipeline(name: str, *, exclude: list[str]) -> Any:
    """``spacy.load(name, exclude=...)`` without importing other packages' factories."""
    spacy = import_spacy()
    from spacy import util

    registry = util.registry._entry_point_factories
    with _LOCK:
        saved = registry.entry_points
        registry.entry_points = False
        try:
            return spacy.load(name, exclude=exclude)
        finally:
            registry.entry_points = saved


def defer_nlp(install: Callable[[], None]) -> None:
    """Make unstructured load its NLP pipeline through ``install`` on first use, not now.

    ``install`` replaces ``unstructured.nlp.tokenize._get_nlp`` with a function returning the
    offline pipeline (see ``parser.install_offline_nlp``); until a classifier needs it nothing
    is loaded. Idempotent."""
    global _DEFERRED
    if _DEFERRED:
        return
    with _LOCK:
        if _DEFERRED:
            return
        import_spacy()
        from unstructured.nlp import tokenize as un_tokenize

        if getattr(un_tokenize._get_nlp, "__module__", "") != un_tokenize.__name__:
            _DEFERRED = True  # a pipeline is already installed
            return

        def _load_on_first_use() -> Any:
            install()
            nlp = un_tokenize._get_nlp
            if nlp is _load_on_first_use:  # the installer did not take over
                raise RuntimeError("the NLP installer did not set unstructured's pipeline")
            return nlp()

        un_tokenize._get_nlp = _load_on_first_use  # type: ignore[assignment]
        _DEFERRED = True


def _table_extraction(kind: str) -> bool:
    from unstructured.file_utils.model import FileType
    from unstructured.partition.auto import decide_table_extraction

    return bool(
        decide_table_extraction(FileType[kind], ["pdf", "jpg", "png", "heic", "webp"], False)
    )


def partition(filename: str, kind: str, **kwargs: Any) -> list[Any]:
    """unstructured elements of ``filename``, detected as ``kind`` (a FileType name).

    The formats of :data:`FAST_PARTITIONERS` go straight to their partitioner with the
    arguments ``partition.auto.partition`` gives them (and the same ``filetype`` metadata);
    anything else goes through ``partition.auto``."""
    target = FAST_PARTITIONERS.get(kind)
    if target is None:
        from unstructured.partition.auto import partition as auto_partition

        return list(auto_partition(filename=filename, **kwargs))
    from unstructured.partition.common.lang import check_language_args

    module, func = target
    partitioner = getattr(importlib.import_module(module), func)
    call: dict[str, Any] = {"metadata_filename": kwargs.get("metadata_filename")}
    if kind == "JSON":
        elements = partitioner(filename=filename, file=None, encoding=None, **call)
    else:
        call.update(
            detect_language_per_element=False,
            language_fallback=None,
            encoding=None,
            infer_table_structure=_table_extraction(kind),
            languages=check_language_args(kwargs.get("languages") or [], None),
            starting_page_number=1,
            strategy=kwargs.get("strategy", "auto"),
            extract_image_block_types=None,
            extract_image_block_to_payload=False,
        )
        elements = partitioner(filename=filename, file=None, **call)
    from unstructured.file_utils.model import FileType

    mime = FileType[kind].mime_type
    for element in elements:
        element.metadata.url = None
        element.metadata.data_source = None
        element.metadata.filetype = mime
    return list(elements)
