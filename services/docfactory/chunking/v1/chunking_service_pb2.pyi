from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_UNSPECIFIED: _ClassVar[Strategy]
    STRATEGY_BY_TITLE: _ClassVar[Strategy]
    STRATEGY_BASIC: _ClassVar[Strategy]
STRATEGY_UNSPECIFIED: Strategy
STRATEGY_BY_TITLE: Strategy
STRATEGY_BASIC: Strategy

class ChunkingOptions(_message.Message):
    __slots__ = ("strategy", "max_tokens", "overlap_tokens", "combine_under_tokens")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMBINE_UNDER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    strategy: Strategy
    max_tokens: int
    overlap_tokens: int
    combine_under_tokens: int
    def __init__(self, strategy: _Optional[_Union[Strategy, str]] = ..., max_tokens: _Optional[int] = ..., overlap_tokens: _Optional[int] = ..., combine_under_tokens: _Optional[int] = ...) -> None: ...

class Element(_message.Message):
    __slots__ = ("type", "text", "page_number", "category_depth")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PAGE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_DEPTH_FIELD_NUMBER: _ClassVar[int]
    type: str
    text: str
    page_number: int
    category_depth: int
    def __init__(self, type: _Optional[str] = ..., text: _Optional[str] = ..., page_number: _Optional[int] = ..., category_depth: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("id", "document_id", "document_version", "index", "text", "page_numbers", "section_path", "element_types", "token_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PAGE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    SECTION_PATH_FIELD_NUMBER: _ClassVar[int]
    ELEMENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    document_id: str
    document_version: int
    index: int
    text: str
    page_numbers: _containers.RepeatedScalarFieldContainer[int]
    section_path: _containers.RepeatedScalarFieldContainer[str]
    element_types: _containers.RepeatedScalarFieldContainer[str]
    token_count: int
    def __init__(self, id: _Optional[str] = ..., document_id: _Optional[str] = ..., document_version: _Optional[int] = ..., index: _Optional[int] = ..., text: _Optional[str] = ..., page_numbers: _Optional[_Iterable[int]] = ..., section_path: _Optional[_Iterable[str]] = ..., element_types: _Optional[_Iterable[str]] = ..., token_count: _Optional[int] = ...) -> None: ...

class ChunkElementsRequest(_message.Message):
    __slots__ = ("document_id", "document_version", "elements", "options")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    document_version: int
    elements: _containers.RepeatedCompositeFieldContainer[Element]
    options: ChunkingOptions
    def __init__(self, document_id: _Optional[str] = ..., document_version: _Optional[int] = ..., elements: _Optional[_Iterable[_Union[Element, _Mapping]]] = ..., options: _Optional[_Union[ChunkingOptions, _Mapping]] = ...) -> None: ...

class ChunkElementsResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[Chunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[Chunk, _Mapping]]] = ...) -> None: ...

class ChunkTextRequest(_message.Message):
    __slots__ = ("document_id", "document_version", "text", "options")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    document_version: int
    text: str
    options: ChunkingOptions
    def __init__(self, document_id: _Optional[str] = ..., document_version: _Optional[int] = ..., text: _Optional[str] = ..., options: _Optional[_Union[ChunkingOptions, _Mapping]] = ...) -> None: ...

class ChunkTextResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[Chunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[Chunk, _Mapping]]] = ...) -> None: ...
