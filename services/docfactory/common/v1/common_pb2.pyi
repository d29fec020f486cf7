import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Classification(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLASSIFICATION_UNSPECIFIED: _ClassVar[Classification]
    CLASSIFICATION_PUBLIC: _ClassVar[Classification]
    CLASSIFICATION_INTERNAL: _ClassVar[Classification]
    CLASSIFICATION_CONFIDENTIAL: _ClassVar[Classification]
    CLASSIFICATION_RESTRICTED: _ClassVar[Classification]
CLASSIFICATION_UNSPECIFIED: Classification
CLASSIFICATION_PUBLIC: Classification
CLASSIFICATION_INTERNAL: Classification
CLASSIFICATION_CONFIDENTIAL: Classification
CLASSIFICATION_RESTRICTED: Classification

class Citation(_message.Message):
    __slots__ = ("document_id", "document_name", "source_uri", "chunk_id", "page_numbers", "section_path", "quote", "score", "collection", "document_version", "marker")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    SECTION_PATH_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    document_name: str
    source_uri: str
    chunk_id: str
    page_numbers: _containers.RepeatedScalarFieldContainer[int]
    section_path: _containers.RepeatedScalarFieldContainer[str]
    quote: str
    score: float
    collection: str
    document_version: int
    marker: int
    def __init__(self, document_id: _Optional[str] = ..., document_name: _Optional[str] = ..., source_uri: _Optional[str] = ..., chunk_id: _Optional[str] = ..., page_numbers: _Optional[_Iterable[int]] = ..., section_path: _Optional[_Iterable[str]] = ..., quote: _Optional[str] = ..., score: _Optional[float] = ..., collection: _Optional[str] = ..., document_version: _Optional[int] = ..., marker: _Optional[int] = ...) -> None: ...

class DocumentFilter(_message.Message):
    __slots__ = ("file_types", "languages", "has_tables", "ocr", "ingested_after", "ingested_before")
    FILE_TYPES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_TABLES_FIELD_NUMBER: _ClassVar[int]
    OCR_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AFTER_FIELD_NUMBER: _ClassVar[int]
    INGESTED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    file_types: _containers.RepeatedScalarFieldContainer[str]
    languages: _containers.RepeatedScalarFieldContainer[str]
    has_tables: bool
    ocr: bool
    ingested_after: _timestamp_pb2.Timestamp
    ingested_before: _timestamp_pb2.Timestamp
    def __init__(self, file_types: _Optional[_Iterable[str]] = ..., languages: _Optional[_Iterable[str]] = ..., has_tables: _Optional[bool] = ..., ocr: _Optional[bool] = ..., ingested_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ingested_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
