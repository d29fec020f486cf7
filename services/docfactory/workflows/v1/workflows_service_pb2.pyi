import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_QUEUED: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_INCOMPLETE: _ClassVar[RunState]
    RUN_STATE_AWAITING_SIGNOFF: _ClassVar[RunState]
    RUN_STATE_ESCALATED: _ClassVar[RunState]
    RUN_STATE_COMPLETED: _ClassVar[RunState]
    RUN_STATE_REJECTED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]

class DecisionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_KIND_UNSPECIFIED: _ClassVar[DecisionKind]
    DECISION_KIND_APPROVE: _ClassVar[DecisionKind]
    DECISION_KIND_AMEND: _ClassVar[DecisionKind]
    DECISION_KIND_REJECT: _ClassVar[DecisionKind]

class CheckOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_OUTCOME_UNSPECIFIED: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_PASSED: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_FAILED: _ClassVar[CheckOutcome]
    CHECK_OUTCOME_NOT_EVALUATED: _ClassVar[CheckOutcome]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_QUEUED: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_INCOMPLETE: RunState
RUN_STATE_AWAITING_SIGNOFF: RunState
RUN_STATE_ESCALATED: RunState
RUN_STATE_COMPLETED: RunState
RUN_STATE_REJECTED: RunState
RUN_STATE_CANCELLED: RunState
RUN_STATE_FAILED: RunState
DECISION_KIND_UNSPECIFIED: DecisionKind
DECISION_KIND_APPROVE: DecisionKind
DECISION_KIND_AMEND: DecisionKind
DECISION_KIND_REJECT: DecisionKind
CHECK_OUTCOME_UNSPECIFIED: CheckOutcome
CHECK_OUTCOME_PASSED: CheckOutcome
CHECK_OUTCOME_FAILED: CheckOutcome
CHECK_OUTCOME_NOT_EVALUATED: CheckOutcome

class DossierFile(_message.Message):
    __slots__ = ("filename", "content")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content: bytes
    def __init__(self, filename: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class DossierDocument(_message.Message):
    __slots__ = ("document_id", "filename", "page_count")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    filename: str
    page_count: int
    def __init__(self, document_id: _Optional[str] = ..., filename: _Optional[str] = ..., page_count: _Optional[int] = ...) -> None: ...

class Dossier(_message.Message):
    __slots__ = ("name", "dossier_id", "display_name", "use_case", "classification", "documents", "metadata", "latest_run_state", "latest_flow", "create_time", "latest_run", "submitted_by", "runs")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOSSIER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LATEST_RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    LATEST_FLOW_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LATEST_RUN_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dossier_id: str
    display_name: str
    use_case: str
    classification: int
    documents: _containers.RepeatedCompositeFieldContainer[DossierDocument]
    metadata: _containers.ScalarMap[str, str]
    latest_run_state: RunState
    latest_flow: str
    create_time: _timestamp_pb2.Timestamp
    latest_run: str
    submitted_by: str
    runs: _containers.RepeatedCompositeFieldContainer[RunSummary]
    def __init__(self, name: _Optional[str] = ..., dossier_id: _Optional[str] = ..., display_name: _Optional[str] = ..., use_case: _Optional[str] = ..., classification: _Optional[int] = ..., documents: _Optional[_Iterable[_Union[DossierDocument, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., latest_run_state: _Optional[_Union[RunState, str]] = ..., latest_flow: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latest_run: _Optional[str] = ..., submitted_by: _Optional[str] = ..., runs: _Optional[_Iterable[_Union[RunSummary, _Mapping]]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("name", "flow", "state", "create_time", "finish_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    flow: str
    state: RunState
    create_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., flow: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("document_id", "page", "start", "end", "quote")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    page: int
    start: int
    end: int
    quote: str
    def __init__(self, document_id: _Optional[str] = ..., page: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., quote: _Optional[str] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("name", "title", "value", "evidence", "confidence", "status", "amended_by", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMENDED_BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    title: str
    value: str
    evidence: Evidence
    confidence: float
    status: str
    amended_by: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., title: _Optional[str] = ..., value: _Optional[str] = ..., evidence: _Optional[_Union[Evidence, _Mapping]] = ..., confidence: _Optional[float] = ..., status: _Optional[str] = ..., amended_by: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class DocumentResult(_message.Message):
    __slots__ = ("document_id", "filename", "type", "type_confidence", "fields")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TYPE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    filename: str
    type: str
    type_confidence: float
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    def __init__(self, document_id: _Optional[str] = ..., filename: _Optional[str] = ..., type: _Optional[str] = ..., type_confidence: _Optional[float] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("rule", "label", "outcome", "fields", "detail", "severity")
    RULE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    rule: str
    label: str
    outcome: CheckOutcome
    fields: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    severity: str
    def __init__(self, rule: _Optional[str] = ..., label: _Optional[str] = ..., outcome: _Optional[_Union[CheckOutcome, str]] = ..., fields: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ..., severity: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("marker", "document_id", "filename", "page", "quote", "source")
    MARKER_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    marker: int
    document_id: str
    filename: str
    page: int
    quote: str
    source: str
    def __init__(self, marker: _Optional[int] = ..., document_id: _Optional[str] = ..., filename: _Optional[str] = ..., page: _Optional[int] = ..., quote: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "kind", "reviewer", "comment", "amendments", "create_time")
    class AmendmentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    AMENDMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    kind: DecisionKind
    reviewer: str
    comment: str
    amendments: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., kind: _Optional[_Union[DecisionKind, str]] = ..., reviewer: _Optional[str] = ..., comment: _Optional[str] = ..., amendments: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunResult(_message.Message):
    __slots__ = ("documents", "checks", "note", "citations", "extractive", "decisions", "released")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTIVE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[DocumentResult]
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    note: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    extractive: bool
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    released: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[DocumentResult, _Mapping]]] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., note: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., extractive: _Optional[bool] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., released: _Optional[bool] = ...) -> None: ...

class StepTiming(_message.Message):
    __slots__ = ("step", "duration_ms", "attempts")
    STEP_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    step: str
    duration_ms: float
    attempts: int
    def __init__(self, step: _Optional[str] = ..., duration_ms: _Optional[float] = ..., attempts: _Optional[int] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("name", "run_id", "dossier", "flow", "state", "step", "missing_documents", "error_reason", "error_message", "result", "signoff_role", "approvals_required", "approvals", "signoff_deadline", "timings", "create_time", "update_time", "notice")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DOSSIER_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MISSING_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SIGNOFF_ROLE_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    SIGNOFF_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    run_id: str
    dossier: str
    flow: str
    state: RunState
    step: str
    missing_documents: _containers.RepeatedScalarFieldContainer[str]
    error_reason: str
    error_message: str
    result: RunResult
    signoff_role: str
    approvals_required: int
    approvals: int
    signoff_deadline: _timestamp_pb2.Timestamp
    timings: _containers.RepeatedCompositeFieldContainer[StepTiming]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    notice: RunNotice
    def __init__(self, name: _Optional[str] = ..., run_id: _Optional[str] = ..., dossier: _Optional[str] = ..., flow: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., step: _Optional[str] = ..., missing_documents: _Optional[_Iterable[str]] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ..., result: _Optional[_Union[RunResult, _Mapping]] = ..., signoff_role: _Optional[str] = ..., approvals_required: _Optional[int] = ..., approvals: _Optional[int] = ..., signoff_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timings: _Optional[_Iterable[_Union[StepTiming, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., notice: _Optional[_Union[RunNotice, _Mapping]] = ...) -> None: ...

class RunNotice(_message.Message):
    __slots__ = ("reason", "message", "queued_seconds")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    queued_seconds: float
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., queued_seconds: _Optional[float] = ...) -> None: ...

class CreateDossierRequest(_message.Message):
    __slots__ = ("display_name", "use_case", "document_ids", "files", "metadata", "classification")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    use_case: str
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    files: _containers.RepeatedCompositeFieldContainer[DossierFile]
    metadata: _containers.ScalarMap[str, str]
    classification: int
    def __init__(self, display_name: _Optional[str] = ..., use_case: _Optional[str] = ..., document_ids: _Optional[_Iterable[str]] = ..., files: _Optional[_Iterable[_Union[DossierFile, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., classification: _Optional[int] = ...) -> None: ...

class CreateDossierResponse(_message.Message):
    __slots__ = ("dossier",)
    DOSSIER_FIELD_NUMBER: _ClassVar[int]
    dossier: Dossier
    def __init__(self, dossier: _Optional[_Union[Dossier, _Mapping]] = ...) -> None: ...

class GetDossierRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDossierResponse(_message.Message):
    __slots__ = ("dossier",)
    DOSSIER_FIELD_NUMBER: _ClassVar[int]
    dossier: Dossier
    def __init__(self, dossier: _Optional[_Union[Dossier, _Mapping]] = ...) -> None: ...

class ListDossiersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "flow")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: RunState
    flow: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., flow: _Optional[str] = ...) -> None: ...

class ListDossiersResponse(_message.Message):
    __slots__ = ("dossiers", "next_page_token")
    DOSSIERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dossiers: _containers.RepeatedCompositeFieldContainer[Dossier]
    next_page_token: str
    def __init__(self, dossiers: _Optional[_Iterable[_Union[Dossier, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("dossier", "flow")
    DOSSIER_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    dossier: str
    flow: str
    def __init__(self, dossier: _Optional[str] = ..., flow: _Optional[str] = ...) -> None: ...

class StartRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("sequence", "step", "event", "state", "detail", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    step: str
    event: str
    state: RunState
    detail: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., step: _Optional[str] = ..., event: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., detail: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPendingDecisionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPendingDecisionsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitDecisionRequest(_message.Message):
    __slots__ = ("name", "kind", "comment", "amendments")
    class AmendmentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    AMENDMENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: DecisionKind
    comment: str
    amendments: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[DecisionKind, str]] = ..., comment: _Optional[str] = ..., amendments: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubmitDecisionResponse(_message.Message):
    __slots__ = ("decision", "run")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    run: Run
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...
