"""Chunking: turn parsed elements into retrieval chunks sized in embedding-model tokens.

Strategies:
- ``by_title``: a title opens a section; chunks never straddle two sections except that
  sections smaller than ``combine_under_tokens`` are packed with the following ones.
- ``basic``: consecutive elements are packed up to ``max_tokens`` regardless of sections.

An element larger than ``max_tokens`` is split on sentence/word boundaries into windows with
``overlap_tokens`` of overlap. Every chunk keeps its pages, section path and element types.

Tables (elements of type ``Table``, a Markdown table from the parser: header row, separator,
one line per row) are never split inside a row: a table larger than ``max_tokens`` becomes
groups of whole rows, each group with the header (and separator) repeated on top. A single row
larger than ``max_tokens`` stays whole, in its own chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from docfactory.core.config import ChunkingConfig
from docfactory.core.errors import InvalidArgument
from docfactory.core.vectorstore import point_id


class TokenCounter(Protocol):
    """Counts tokens with the embedding model's tokenizer (injected by the composition root)."""

    name: str

    def count(self, text: str) -> int: ...


TITLE_TYPES = {"Title", "Header1", "Heading"}
TABLE_TYPE = "Table"
_TABLE_SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+$")
SKIP_TYPES = {"PageBreak", "PageNumber", "Header", "Footer", "Image"}
STRATEGIES = ("by_title", "basic")


@dataclass(frozen=True)
class Element:
    type: str
    text: str
    page_number: int = 0
    category_depth: int = 0


@dataclass(frozen=True)
class ChunkOptions:
    strategy: str = "by_title"
    max_tokens: int = 256
    overlap_tokens: int = 32
    combine_under_tokens: int = 64

    def validate(self) -> ChunkOptions:
        if self.strategy not in STRATEGIES:
            raise InvalidArgument(
                f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}",
                reason="INVALID_STRATEGY",
            )
        if not 16 <= self.max_tokens <= 8192:
            raise InvalidArgument(
                f"max_tokens must be within [16, 8192], got {self.max_tokens}",
                reason="INVALID_MAX_TOKENS",
            )
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise InvalidArgument(
                f"overlap_tokens must be within [0, max_tokens/2), got {self.overlap_tokens}",
                reason="INVALID_OVERLAP",
            )
        if self.combine_under_tokens < 0:
            raise InvalidArgument("combine_under_tokens must be >= 0", reason="INVALID_COMBINE")
        return self


@dataclass(frozen=True)
class Chunk:
    id: str
    document_id: str
    document_version: int
    index: int
    text: str
    page_numbers: tuple[int, ...]
    section_path: tuple[str, ...]
    element_types: tuple[str, ...]
    token_count: int


@dataclass
class _Piece:
    text: str
    type: str
    page: int
    section: tuple[str, ...]
    tokens: int


@dataclass
class _Builder:
    pieces: list[_Piece] = field(default_factory=list)
    tokens: int = 0


_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")


class Chunker:
    def __init__(self, counter: TokenCounter, defaults: ChunkingConfig) -> None:
        self._count = counter.count
        self.tokenizer_name = counter.name
        self._defaults = defaults

    def options(
        self,
        strategy: str = "",
        max_tokens: int = 0,
        overlap_tokens: int = 0,
        combine_under_tokens: int = 0,
    ) -> ChunkOptions:
        d = self._defaults
        return ChunkOptions(
            strategy=strategy or d.strategy,
            max_tokens=max_tokens or d.max_tokens,
            overlap_tokens=overlap_tokens if overlap_tokens else d.overlap_tokens,
            combine_under_tokens=combine_under_tokens or d.combine_under_tokens,
        ).validate()

    # -- splitting of oversized elements -----------------------------------------------
    def _split(self, text: str, max_tokens: int, overlap: int) -> list[str]:
        units: list[str] = []
        for sentence in (s.strip() for s in _SENTENCE.split(text)):
            if not sentence:
                continue
            if self._count(sentence) <= max_tokens:
                units.append(sentence)
            else:
                units.extend(sentence.split())
        windows: list[str] = []
        current: list[tuple[str, int]] = []
        size = 0
        for unit in units:
            n = self._count(unit) + 1
            if current and size + n > max_tokens:
                windows.append(" ".join(u for u, _ in current))
                # keep a tail of ~overlap tokens
                tail: list[tuple[str, int]] = []
                kept = 0
                for u, k in reversed(current):
                    if kept + k > overlap:
                        break
                    tail.insert(0, (u, k))
                    kept += k
                current, size = tail, kept
            if n > max_tokens:  # a single unbreakable token run: hard cut by characters
                step = max(8, len(unit) * max_tokens // n)
                for i in range(0, len(unit), step):
                    windows.append(unit[i : i + step])
                current, size = [], 0
                continue
            current.append((unit, n))
            size += n
        if current:
            windows.append(" ".join(u for u, _ in current))
        return windows

    def _split_table(self, text: str, max_tokens: int) -> list[str]:
        """Groups of whole rows, each under the table's header (Markdown table) or, for a table
        without a Markdown header, groups of whole lines."""
        lines = [line for line in text.split("\n") if line.strip()]
        header: list[str] = []
        if len(lines) >= 2 and _TABLE_SEPARATOR.match(lines[1].strip()):
            header, lines = lines[:2], lines[2:]
        budget = max_tokens - (self._count("\n".join(header)) + 1 if header else 0)
        groups: list[list[str]] = []
        current: list[str] = []
        size = 0
        for row in lines:
            n = self._count(row) + 1
            if current and size + n > budget:
                groups.append(current)
                current, size = [], 0
            current.append(row)
            size += n
        if current:
            groups.append(current)
        return ["\n".join(header + group) for group in groups] or ["\n".join(header)]

    # -- main ---------------------------------------------------------------------------
    def chunk(
        self,
        document_id: str,
        version: int,
        elements: Sequence[Element],
        opts: ChunkOptions,
    ) -> list[Chunk]:
        if not document_id:
            raise InvalidArgument("document_id is required", reason="DOCUMENT_ID_REQUIRED")
        version = version or 1
        pieces: list[_Piece] = []
        titles: list[tuple[int, str]] = []
        # Page furniture (headers, footers, page numbers) is dropped, unless it is all the
        # document has (some PDFs tag every text box as Header).
        skip = SKIP_TYPES
        if not any((e.text or "").strip() and e.type not in SKIP_TYPES for e in elements):
            skip = {"PageBreak", "Image"}
        for el in elements:
            text = (el.text or "").strip()
            if not text or el.type in skip:
                continue
            if el.type in TITLE_TYPES:
                depth = max(0, el.category_depth)
                titles = [t for t in titles if t[0] < depth]
                titles.append((depth, text[:200]))
            section = tuple(t for _, t in titles)
            n = self._count(text)
            if n > opts.max_tokens and el.type == TABLE_TYPE:
                for part in self._split_table(text, opts.max_tokens):
                    pieces.append(_Piece(part, el.type, el.page_number, section, self._count(part)))
            elif n > opts.max_tokens:
                for part in self._split(text, opts.max_tokens, opts.overlap_tokens):
                    pieces.append(_Piece(part, el.type, el.page_number, section, self._count(part)))
            else:
                pieces.append(_Piece(text, el.type, el.page_number, section, n))

        groups: list[list[_Piece]] = []
        current = _Builder()
        for piece in pieces:
            boundary = (
                opts.strategy == "by_title"
                and piece.type in TITLE_TYPES
                and current.pieces
                and current.tokens >= opts.combine_under_tokens
            ) or (
                # two parts of a split table are never packed together (each has the header)
                piece.type == TABLE_TYPE
                and bool(current.pieces)
                and current.pieces[-1].type == TABLE_TYPE
            )
            if current.pieces and (boundary or current.tokens + piece.tokens + 1 > opts.max_tokens):
                groups.append(current.pieces)
                current = _Builder()
            current.pieces.append(piece)
            current.tokens += piece.tokens + 1
        if current.pieces:
            groups.append(current.pieces)

        chunks: list[Chunk] = []
        for group in groups:
            text = "\n\n".join(p.text for p in group)
            pages = tuple(sorted({p.page for p in group if p.page > 0}))
            types = tuple(dict.fromkeys(p.type for p in group))
            # the section of the first non-title piece (a trailing title starts the next one)
            body = next((p for p in group if p.type not in TITLE_TYPES), group[0])
            idx = len(chunks)
            chunks.append(
                Chunk(
                    id=point_id(document_id, version, idx),
                    document_id=document_id,
                    document_version=version,
                    index=idx,
                    text=text,
                    page_numbers=pages,
                    section_path=body.section,
                    element_types=types,
                    token_count=self._count(text),
                )
            )
        return chunks

    def chunk_text(
        self, document_id: str, version: int, text: str, opts: ChunkOptions
    ) -> list[Chunk]:
        paragraphs = [p for p in re.split(r"\n\s*\n", text or "") if p.strip()]
        return self.chunk(
            document_id, version, [Element("NarrativeText", p) for p in paragraphs], opts
        )
