from google.api import field_behavior_pb2 as _field_behavior_pb2
from docfactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_SPARSE: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]

class TurnRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_ROLE_UNSPECIFIED: _ClassVar[TurnRole]
    TURN_ROLE_USER: _ClassVar[TurnRole]
    TURN_ROLE_ASSISTANT: _ClassVar[TurnRole]
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_SPARSE: SearchMode
SEARCH_MODE_HYBRID: SearchMode
TURN_ROLE_UNSPECIFIED: TurnRole
TURN_ROLE_USER: TurnRole
TURN_ROLE_ASSISTANT: TurnRole

class SearchRequest(_message.Message):
    __slots__ = ("query", "collections", "top_k", "use_case", "document_ids", "mode", "filter")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    query: str
    collections: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    use_case: str
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    mode: SearchMode
    filter: _common_pb2.DocumentFilter
    def __init__(self, query: _Optional[str] = ..., collections: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., use_case: _Optional[str] = ..., document_ids: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., filter: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("text", "score", "citation")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    citation: _common_pb2.Citation
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ..., citation: _Optional[_Union[_common_pb2.Citation, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "took_ms")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOOK_MS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    took_ms: float
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., took_ms: _Optional[float] = ...) -> None: ...

class AnswerRequest(_message.Message):
    __slots__ = ("question", "collections", "top_k", "use_case", "document_ids", "mode", "filter", "history")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    question: str
    collections: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    use_case: str
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    mode: SearchMode
    filter: _common_pb2.DocumentFilter
    history: _containers.RepeatedCompositeFieldContainer[ConversationTurn]
    def __init__(self, question: _Optional[str] = ..., collections: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., use_case: _Optional[str] = ..., document_ids: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., filter: _Optional[_Union[_common_pb2.DocumentFilter, _Mapping]] = ..., history: _Optional[_Iterable[_Union[ConversationTurn, _Mapping]]] = ...) -> None: ...

class ConversationTurn(_message.Message):
    __slots__ = ("role", "text")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    role: TurnRole
    text: str
    def __init__(self, role: _Optional[_Union[TurnRole, str]] = ..., text: _Optional[str] = ...) -> None: ...

class AnswerDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class AnswerCitations(_message.Message):
    __slots__ = ("citations",)
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    def __init__(self, citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ...) -> None: ...

class AnswerSummary(_message.Message):
    __slots__ = ("generator", "extractive", "insufficient_context", "retrieval_ms", "first_token_ms", "generation_ms", "total_ms", "prompt_tokens", "completion_tokens", "language", "review_id", "pending_review", "model", "answer_id")
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    EXTRACTIVE_FIELD_NUMBER: _ClassVar[int]
    INSUFFICIENT_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_REVIEW_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    generator: str
    extractive: bool
    insufficient_context: bool
    retrieval_ms: float
    first_token_ms: float
    generation_ms: float
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    language: str
    review_id: str
    pending_review: bool
    model: str
    answer_id: int
    def __init__(self, generator: _Optional[str] = ..., extractive: _Optional[bool] = ..., insufficient_context: _Optional[bool] = ..., retrieval_ms: _Optional[float] = ..., first_token_ms: _Optional[float] = ..., generation_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., language: _Optional[str] = ..., review_id: _Optional[str] = ..., pending_review: _Optional[bool] = ..., model: _Optional[str] = ..., answer_id: _Optional[int] = ...) -> None: ...

class AnswerResponse(_message.Message):
    __slots__ = ("delta", "citations", "summary")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    delta: AnswerDelta
    citations: AnswerCitations
    summary: AnswerSummary
    def __init__(self, delta: _Optional[_Union[AnswerDelta, _Mapping]] = ..., citations: _Optional[_Union[AnswerCitations, _Mapping]] = ..., summary: _Optional[_Union[AnswerSummary, _Mapping]] = ...) -> None: ...
