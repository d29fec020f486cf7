from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_USEFUL: _ClassVar[Verdict]
    VERDICT_NOT_USEFUL: _ClassVar[Verdict]

class AnswerUsage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWER_USAGE_UNSPECIFIED: _ClassVar[AnswerUsage]
    ANSWER_USAGE_USED_AS_IS: _ClassVar[AnswerUsage]
    ANSWER_USAGE_EDITED: _ClassVar[AnswerUsage]
    ANSWER_USAGE_DISCARDED: _ClassVar[AnswerUsage]

class LinkMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_METHOD_UNSPECIFIED: _ClassVar[LinkMethod]
    LINK_METHOD_AUDIT_SEQ: _ClassVar[LinkMethod]
    LINK_METHOD_REVIEW_ID: _ClassVar[LinkMethod]
    LINK_METHOD_LATEST_ANSWER: _ClassVar[LinkMethod]
    LINK_METHOD_RUN: _ClassVar[LinkMethod]
VERDICT_UNSPECIFIED: Verdict
VERDICT_USEFUL: Verdict
VERDICT_NOT_USEFUL: Verdict
ANSWER_USAGE_UNSPECIFIED: AnswerUsage
ANSWER_USAGE_USED_AS_IS: AnswerUsage
ANSWER_USAGE_EDITED: AnswerUsage
ANSWER_USAGE_DISCARDED: AnswerUsage
LINK_METHOD_UNSPECIFIED: LinkMethod
LINK_METHOD_AUDIT_SEQ: LinkMethod
LINK_METHOD_REVIEW_ID: LinkMethod
LINK_METHOD_LATEST_ANSWER: LinkMethod
LINK_METHOD_RUN: LinkMethod

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("answer_audit_seq", "review_id", "verdict", "rating", "comment", "time_saved_minutes", "usage", "run")
    ANSWER_AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    TIME_SAVED_MINUTES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    answer_audit_seq: int
    review_id: str
    verdict: Verdict
    rating: int
    comment: str
    time_saved_minutes: float
    usage: AnswerUsage
    run: str
    def __init__(self, answer_audit_seq: _Optional[int] = ..., review_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., rating: _Optional[int] = ..., comment: _Optional[str] = ..., time_saved_minutes: _Optional[float] = ..., usage: _Optional[_Union[AnswerUsage, str]] = ..., run: _Optional[str] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id", "answer_audit_seq", "link_method", "feedback_audit_seq", "use_case")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    LINK_METHOD_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    answer_audit_seq: int
    link_method: LinkMethod
    feedback_audit_seq: int
    use_case: str
    def __init__(self, feedback_id: _Optional[str] = ..., answer_audit_seq: _Optional[int] = ..., link_method: _Optional[_Union[LinkMethod, str]] = ..., feedback_audit_seq: _Optional[int] = ..., use_case: _Optional[str] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("use_case", "from_date", "to_date")
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    use_case: str
    from_date: str
    to_date: str
    def __init__(self, use_case: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("date", "active_users", "questions", "searches", "feedback", "time_saved_minutes")
    DATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    TIME_SAVED_MINUTES_FIELD_NUMBER: _ClassVar[int]
    date: str
    active_users: int
    questions: int
    searches: int
    feedback: int
    time_saved_minutes: float
    def __init__(self, date: _Optional[str] = ..., active_users: _Optional[int] = ..., questions: _Optional[int] = ..., searches: _Optional[int] = ..., feedback: _Optional[int] = ..., time_saved_minutes: _Optional[float] = ...) -> None: ...

class WeeklyUsage(_message.Message):
    __slots__ = ("week", "active_users", "questions")
    WEEK_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    week: str
    active_users: int
    questions: int
    def __init__(self, week: _Optional[str] = ..., active_users: _Optional[int] = ..., questions: _Optional[int] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("tenant", "use_case", "active_users", "questions", "searches", "denied", "answers_with_feedback", "feedback", "mean_rating", "useful_rate", "time_saved_minutes", "citation_rate", "refusal_rate", "review_approval_rate", "review_decisions", "latency_p50_ms", "latency_p95_ms", "used_as_is", "edited", "discarded", "daily", "weekly", "internal_searches", "denied_other")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    DENIED_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_WITH_FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    MEAN_RATING_FIELD_NUMBER: _ClassVar[int]
    USEFUL_RATE_FIELD_NUMBER: _ClassVar[int]
    TIME_SAVED_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CITATION_RATE_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_RATE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_APPROVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    USED_AS_IS_FIELD_NUMBER: _ClassVar[int]
    EDITED_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    WEEKLY_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_SEARCHES_FIELD_NUMBER: _ClassVar[int]
    DENIED_OTHER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    use_case: str
    active_users: int
    questions: int
    searches: int
    denied: int
    answers_with_feedback: int
    feedback: int
    mean_rating: float
    useful_rate: float
    time_saved_minutes: float
    citation_rate: float
    refusal_rate: float
    review_approval_rate: float
    review_decisions: int
    latency_p50_ms: float
    latency_p95_ms: float
    used_as_is: int
    edited: int
    discarded: int
    daily: _containers.RepeatedCompositeFieldContainer[DailyUsage]
    weekly: _containers.RepeatedCompositeFieldContainer[WeeklyUsage]
    internal_searches: int
    denied_other: int
    def __init__(self, tenant: _Optional[str] = ..., use_case: _Optional[str] = ..., active_users: _Optional[int] = ..., questions: _Optional[int] = ..., searches: _Optional[int] = ..., denied: _Optional[int] = ..., answers_with_feedback: _Optional[int] = ..., feedback: _Optional[int] = ..., mean_rating: _Optional[float] = ..., useful_rate: _Optional[float] = ..., time_saved_minutes: _Optional[float] = ..., citation_rate: _Optional[float] = ..., refusal_rate: _Optional[float] = ..., review_approval_rate: _Optional[float] = ..., review_decisions: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., used_as_is: _Optional[int] = ..., edited: _Optional[int] = ..., discarded: _Optional[int] = ..., daily: _Optional[_Iterable[_Union[DailyUsage, _Mapping]]] = ..., weekly: _Optional[_Iterable[_Union[WeeklyUsage, _Mapping]]] = ..., internal_searches: _Optional[int] = ..., denied_other: _Optional[int] = ...) -> None: ...

class FieldCorrections(_message.Message):
    __slots__ = ("field", "count")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    field: str
    count: int
    def __init__(self, field: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RunStateCount(_message.Message):
    __slots__ = ("state", "runs")
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    state: str
    runs: int
    def __init__(self, state: _Optional[str] = ..., runs: _Optional[int] = ...) -> None: ...

class DossierUsage(_message.Message):
    __slots__ = ("runs", "by_state", "signed", "rejected", "incomplete", "approval_rate", "has_approval_rate", "median_decision_seconds", "decided_timed", "approvals", "rejections", "fields_corrected", "feedback", "useful_rate", "time_saved_minutes")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    BY_STATE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    HAS_APPROVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_DECISION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_TIMED_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_CORRECTED_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    USEFUL_RATE_FIELD_NUMBER: _ClassVar[int]
    TIME_SAVED_MINUTES_FIELD_NUMBER: _ClassVar[int]
    runs: int
    by_state: _containers.RepeatedCompositeFieldContainer[RunStateCount]
    signed: int
    rejected: int
    incomplete: int
    approval_rate: float
    has_approval_rate: bool
    median_decision_seconds: float
    decided_timed: int
    approvals: int
    rejections: int
    fields_corrected: _containers.RepeatedCompositeFieldContainer[FieldCorrections]
    feedback: int
    useful_rate: float
    time_saved_minutes: float
    def __init__(self, runs: _Optional[int] = ..., by_state: _Optional[_Iterable[_Union[RunStateCount, _Mapping]]] = ..., signed: _Optional[int] = ..., rejected: _Optional[int] = ..., incomplete: _Optional[int] = ..., approval_rate: _Optional[float] = ..., has_approval_rate: _Optional[bool] = ..., median_decision_seconds: _Optional[float] = ..., decided_timed: _Optional[int] = ..., approvals: _Optional[int] = ..., rejections: _Optional[int] = ..., fields_corrected: _Optional[_Iterable[_Union[FieldCorrections, _Mapping]]] = ..., feedback: _Optional[int] = ..., useful_rate: _Optional[float] = ..., time_saved_minutes: _Optional[float] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("records", "from_date", "to_date", "dossiers")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    DOSSIERS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    from_date: str
    to_date: str
    dossiers: DossierUsage
    def __init__(self, records: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., dossiers: _Optional[_Union[DossierUsage, _Mapping]] = ...) -> None: ...
