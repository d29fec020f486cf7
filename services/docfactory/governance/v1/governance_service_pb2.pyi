import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from docfactory.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_DECISION_UNSPECIFIED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_APPROVE: _ClassVar[ReviewDecision]
    REVIEW_DECISION_AMEND: _ClassVar[ReviewDecision]
    REVIEW_DECISION_REJECT: _ClassVar[ReviewDecision]
REVIEW_DECISION_UNSPECIFIED: ReviewDecision
REVIEW_DECISION_APPROVE: ReviewDecision
REVIEW_DECISION_AMEND: ReviewDecision
REVIEW_DECISION_REJECT: ReviewDecision

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UseCase(_message.Message):
    __slots__ = ("use_case_id", "owner", "purpose", "allowed_collections", "max_classification", "allowed_models", "human_review_required", "retention")
    USE_CASE_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    HUMAN_REVIEW_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    use_case_id: str
    owner: str
    purpose: str
    allowed_collections: _containers.RepeatedScalarFieldContainer[str]
    max_classification: _common_pb2.Classification
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    human_review_required: bool
    retention: str
    def __init__(self, use_case_id: _Optional[str] = ..., owner: _Optional[str] = ..., purpose: _Optional[str] = ..., allowed_collections: _Optional[_Iterable[str]] = ..., max_classification: _Optional[_Union[_common_pb2.Classification, str]] = ..., allowed_models: _Optional[_Iterable[str]] = ..., human_review_required: _Optional[bool] = ..., retention: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("version", "use_cases")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USE_CASES_FIELD_NUMBER: _ClassVar[int]
    version: str
    use_cases: _containers.RepeatedCompositeFieldContainer[UseCase]
    def __init__(self, version: _Optional[str] = ..., use_cases: _Optional[_Iterable[_Union[UseCase, _Mapping]]] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("review_id", "use_case", "requester_key_id", "state", "draft_text", "citations", "model", "create_time", "claimed_by_key_id", "claim_expire_time", "reviewer_key_id", "comment", "amended_text", "question")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DRAFT_TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    AMENDED_TEXT_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    use_case: str
    requester_key_id: str
    state: str
    draft_text: str
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    model: str
    create_time: _timestamp_pb2.Timestamp
    claimed_by_key_id: str
    claim_expire_time: _timestamp_pb2.Timestamp
    reviewer_key_id: str
    comment: str
    amended_text: str
    question: str
    def __init__(self, review_id: _Optional[str] = ..., use_case: _Optional[str] = ..., requester_key_id: _Optional[str] = ..., state: _Optional[str] = ..., draft_text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., model: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., claimed_by_key_id: _Optional[str] = ..., claim_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reviewer_key_id: _Optional[str] = ..., comment: _Optional[str] = ..., amended_text: _Optional[str] = ..., question: _Optional[str] = ...) -> None: ...

class ListReviewsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "use_case")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    use_case: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., use_case: _Optional[str] = ...) -> None: ...

class ListReviewsResponse(_message.Message):
    __slots__ = ("reviews", "next_page_token")
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    next_page_token: str
    def __init__(self, reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DecideReviewRequest(_message.Message):
    __slots__ = ("review_id", "decision", "amended_text", "comment")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    AMENDED_TEXT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    decision: ReviewDecision
    amended_text: str
    comment: str
    def __init__(self, review_id: _Optional[str] = ..., decision: _Optional[_Union[ReviewDecision, str]] = ..., amended_text: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class DecideReviewResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class GetReviewedAnswerRequest(_message.Message):
    __slots__ = ("review_id",)
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    def __init__(self, review_id: _Optional[str] = ...) -> None: ...

class GetReviewedAnswerResponse(_message.Message):
    __slots__ = ("state", "text", "citations", "reviewer_key_id")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    state: str
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    reviewer_key_id: str
    def __init__(self, state: _Optional[str] = ..., text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., reviewer_key_id: _Optional[str] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditProblem(_message.Message):
    __slots__ = ("seq", "kind")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("ok", "checked", "problems")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    checked: int
    problems: _containers.RepeatedCompositeFieldContainer[AuditProblem]
    def __init__(self, ok: _Optional[bool] = ..., checked: _Optional[int] = ..., problems: _Optional[_Iterable[_Union[AuditProblem, _Mapping]]] = ...) -> None: ...

class GetCallerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCallerResponse(_message.Message):
    __slots__ = ("tenant", "key_id", "roles", "policy_configured")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    POLICY_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    key_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    policy_configured: bool
    def __init__(self, tenant: _Optional[str] = ..., key_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., policy_configured: _Optional[bool] = ...) -> None: ...

class GetReviewRequest(_message.Message):
    __slots__ = ("review_id",)
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    def __init__(self, review_id: _Optional[str] = ...) -> None: ...

class GetReviewResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class ClaimReviewRequest(_message.Message):
    __slots__ = ("review_id", "ttl_seconds")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    ttl_seconds: int
    def __init__(self, review_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ClaimReviewResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...

class ExportAuditRequest(_message.Message):
    __slots__ = ("start_time",)
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportAuditResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...
