"""Usage records per tenant and use case, computed from the audit log and the feedback table.

Definitions (the report's glossary says the same in plain words). A period is ``[from 00:00
UTC, to + 1 day 00:00 UTC)``; audit records and feedback are taken by their own time.

- user actions only: a record of an internal key (a worker key acting for the tenant, e.g. a
  dossier's rule retrieval through Search) is counted apart (``internal_searches``) and in no
  other figure (``load_usage(internal_keys=...)``).
- questions: ANSWER audit records (any outcome); searches: SEARCH records; denied: DENIED
  records of a question or a search (refused by policy: unknown use case, collection not
  allowed, quota, ...); denied_other: the other DENIED records (a refused click on a dossier
  decision, a sign-off by the same reviewer, a page without the role...), outside the refusal
  rate.
- active users: distinct API key ids with a SEARCH, ANSWER or FEEDBACK record (per day, per
  ISO week, over the period).
- completed answers: ANSWER records with outcome OK or PENDING_REVIEW. citation rate: completed
  answers with at least one cited document / completed answers. latency p50/p95: over the
  completed answers' ``latency_ms`` (linear interpolation between closest ranks).
- refusal rate: (denied + ANSWER records whose details say ``insufficient_context``) /
  (questions + searches + denied). The answering service does not record insufficient context
  in the audit yet, so today this counts policy refusals only.
- feedback: rows of the feedback table about answers (feedback on a signed dossier run goes
  to the dossier figures, :mod:`docfactory.measurement.dossiers`); answers with feedback:
  distinct linked answer seqs; mean rating over the feedback with a 1-5 rating; useful rate:
  useful / feedback with a verdict; time saved: sum of the minutes estimated by users.
- review approval rate: REVIEW_DECISION records APPROVED or AMENDED / all REVIEW_DECISION.

A rate with no denominator is ``None`` (shown as "n/a"), never 0.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from docfactory.core.errors import InvalidArgument
from docfactory.core.timeutil import utc
from docfactory.governance.audit import (
    ANSWER,
    FEEDBACK,
    REVIEW_DECISION,
    SEARCH,
    AuditLog,
    AuditRecord,
)
from docfactory.measurement.feedback import (
    DISCARDED,
    EDITED,
    LINK_RUN,
    USED_AS_IS,
    Feedback,
    FeedbackStore,
)

DENIED = "DENIED"
#: RPCs whose refusal is a refused question or search (DENIED records written by the
#: answering service carry no ``rpc``; those of the gate and the interceptor name it).
ANSWER_RPCS = frozenset({"", "Search", "Answer"})
COMPLETED = ("OK", "PENDING_REVIEW")
APPROVED_DECISIONS = ("APPROVED", "AMENDED")
USER_ACTIONS = (SEARCH, ANSWER, FEEDBACK)


@dataclass(frozen=True)
class Period:
    start: dt.date  # inclusive
    end: dt.date  # inclusive

    @classmethod
    def parse(cls, start: str, end: str, *, today: dt.date | None = None) -> Period:
        try:
            last = dt.date.fromisoformat(end) if end else (today or dt.datetime.now(dt.UTC).date())
            first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=30)
        except ValueError as exc:
            raise InvalidArgument(f"dates are YYYY-MM-DD: {exc}", reason="INVALID_DATE") from exc
        if first > last:
            raise InvalidArgument("from is after to", reason="INVALID_DATE_RANGE")
        if (last - first).days > 3660:
            raise InvalidArgument("the period exceeds 10 years", reason="INVALID_DATE_RANGE")
        return cls(first, last)

    @property
    def start_time(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)

    @property
    def end_time(self) -> dt.datetime:
        """Exclusive end: midnight after the last day."""
        return dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass
class DailyUsage:
    date: str
    active_users: int = 0
    questions: int = 0
    searches: int = 0
    feedback: int = 0
    time_saved_minutes: float = 0.0


@dataclass
class WeeklyUsage:
    week: str
    active_users: int = 0
    questions: int = 0


@dataclass
class UsageRecord:
    tenant: str  # "*" = every tenant of the selection
    use_case: str  # "*" = every use case of the selection
    active_users: int = 0
    questions: int = 0
    searches: int = 0
    denied: int = 0
    denied_other: int = 0
    internal_searches: int = 0
    completed_answers: int = 0
    cited_answers: int = 0
    insufficient_context: int = 0
    answers_with_feedback: int = 0
    feedback: int = 0
    ratings: int = 0
    mean_rating: float | None = None
    verdicts: int = 0
    useful: int = 0
    useful_rate: float | None = None
    time_saved_minutes: float = 0.0
    citation_rate: float | None = None
    refusal_rate: float | None = None
    review_decisions: int = 0
    review_approved: int = 0
    review_approval_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    used_as_is: int = 0
    edited: int = 0
    discarded: int = 0
    rating_counts: dict[str, int] = field(default_factory=dict)
    daily: list[DailyUsage] = field(default_factory=list)
    weekly: list[WeeklyUsage] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_insufficient(rec: AuditRecord) -> bool:
    return bool(rec.details.get("insufficient_context"))


def is_answer_refusal(rec: AuditRecord) -> bool:
    """A DENIED record of a question or a search (not of a dossier click or a page)."""
    return str(rec.details.get("rpc") or "") in ANSWER_RPCS


def aggregate(
    tenant: str,
    use_case: str,
    records: Iterable[AuditRecord],
    feedback: Iterable[Feedback],
    period: Period,
    internal_keys: frozenset[str] = frozenset(),
) -> UsageRecord:
    """One usage record over the given (already filtered) audit records and feedback;
    the records of ``internal_keys`` (worker keys) are not user actions."""
    out = UsageRecord(tenant=tenant, use_case=use_case)
    days = {d.isoformat(): DailyUsage(d.isoformat()) for d in period.days()}
    weeks: dict[str, WeeklyUsage] = {}
    for d in period.days():
        weeks.setdefault(iso_week(d), WeeklyUsage(iso_week(d)))
    users: set[str] = set()
    users_day: dict[str, set[str]] = defaultdict(set)
    users_week: dict[str, set[str]] = defaultdict(set)
    latencies: list[float] = []
    for rec in records:
        day = utc(rec.time).date()
        dkey, wkey = day.isoformat(), iso_week(day)
        if dkey not in days:
            continue
        if rec.key_id in internal_keys and rec.action in USER_ACTIONS:
            out.internal_searches += rec.action == SEARCH
            continue
        if rec.action in USER_ACTIONS:
            users.add(rec.key_id)
            users_day[dkey].add(rec.key_id)
            users_week[wkey].add(rec.key_id)
        if rec.action == ANSWER:
            out.questions += 1
            days[dkey].questions += 1
            weeks[wkey].questions += 1
            if _is_insufficient(rec):
                out.insufficient_context += 1
            if rec.outcome in COMPLETED:
                out.completed_answers += 1
                latencies.append(float(rec.latency_ms))
                if rec.document_ids:
                    out.cited_answers += 1
        elif rec.action == SEARCH:
            out.searches += 1
            days[dkey].searches += 1
        elif rec.action == DENIED:
            if is_answer_refusal(rec):
                out.denied += 1
            else:
                out.denied_other += 1
        elif rec.action == REVIEW_DECISION:
            out.review_decisions += 1
            if rec.outcome in APPROVED_DECISIONS:
                out.review_approved += 1
    ratings: list[int] = []
    answered: set[int] = set()
    for fb in feedback:
        dkey = utc(fb.time).date().isoformat()
        if dkey not in days or fb.link_method == LINK_RUN:
            continue
        out.feedback += 1
        answered.add(fb.answer_audit_seq)
        days[dkey].feedback += 1
        days[dkey].time_saved_minutes += fb.time_saved_minutes
        out.time_saved_minutes += fb.time_saved_minutes
        if fb.rating:
            ratings.append(fb.rating)
            out.rating_counts[str(fb.rating)] = out.rating_counts.get(str(fb.rating), 0) + 1
        if fb.useful is not None:
            out.verdicts += 1
            out.useful += int(fb.useful)
        out.used_as_is += fb.usage == USED_AS_IS
        out.edited += fb.usage == EDITED
        out.discarded += fb.usage == DISCARDED
    out.active_users = len(users)
    out.answers_with_feedback = len(answered)
    out.ratings = len(ratings)
    out.mean_rating = sum(ratings) / len(ratings) if ratings else None
    out.useful_rate = _rate(out.useful, out.verdicts)
    out.citation_rate = _rate(out.cited_answers, out.completed_answers)
    out.refusal_rate = _rate(
        out.denied + out.insufficient_context, out.questions + out.searches + out.denied
    )
    out.review_approval_rate = _rate(out.review_approved, out.review_decisions)
    out.latency_p50_ms = percentile(latencies, 50)
    out.latency_p95_ms = percentile(latencies, 95)
    for dkey, daily in days.items():
        daily.active_users = len(users_day.get(dkey, ()))
    for wkey, weekly in weeks.items():
        weekly.active_users = len(users_week.get(wkey, ()))
    out.daily = list(days.values())
    out.weekly = list(weeks.values())
    return out


@dataclass
class UsageData:
    """Audit records and feedback of one selection (tenant / use case / period)."""

    period: Period
    records: list[AuditRecord]
    feedback: list[Feedback]
    internal_keys: frozenset[str] = frozenset()

    def groups(self) -> list[tuple[str, str]]:
        keys = {
            (r.tenant, r.use_case)
            for r in self.records
            if _counted(r) and r.key_id not in self.internal_keys
        }
        keys |= {(f.tenant, f.use_case) for f in self.feedback if f.link_method != LINK_RUN}
        return sorted(keys)

    def record_for(self, tenant: str = "*", use_case: str = "*") -> UsageRecord:
        def match(t: str, u: str) -> bool:
            return (tenant == "*" or t == tenant) and (use_case == "*" or u == use_case)

        return aggregate(
            tenant,
            use_case,
            (r for r in self.records if match(r.tenant, r.use_case)),
            (f for f in self.feedback if match(f.tenant, f.use_case)),
            self.period,
            self.internal_keys,
        )

    def run_feedback(self, tenant: str = "*", use_case: str = "*") -> list[Feedback]:
        """Feedback given on signed dossier runs (link method RUN)."""
        return [
            f
            for f in self.feedback
            if f.link_method == LINK_RUN
            and (tenant == "*" or f.tenant == tenant)
            and (use_case == "*" or f.use_case == use_case)
        ]

    def per_group(self) -> list[UsageRecord]:
        return [self.record_for(t, u) for t, u in self.groups()]

    def per_tenant(self) -> list[UsageRecord]:
        return [self.record_for(t, "*") for t in sorted({t for t, _ in self.groups()})]


def _counted(rec: AuditRecord) -> bool:
    return rec.action in (*USER_ACTIONS, DENIED, REVIEW_DECISION)


def load_usage(
    audit: AuditLog,
    feedback: FeedbackStore,
    period: Period,
    *,
    tenant: str | None = None,
    use_case: str | None = None,
    record_filter: Callable[[AuditRecord], bool] | None = None,
    internal_keys: Iterable[str] = (),
) -> UsageData:
    """Read the selection from the database (keyset-paginated audit scan from the start).
    ``internal_keys``: key ids of workers (their records are not user actions)."""
    end = period.end_time
    records = [
        r
        for r in audit.records(since=period.start_time, tenant=tenant)
        if r.time < end
        and _counted(r)
        and (use_case is None or r.use_case == use_case)
        and (record_filter is None or record_filter(r))
    ]
    items = list(feedback.items(start=period.start_time, end=end, tenant=tenant, use_case=use_case))
    return UsageData(
        period=period, records=records, feedback=items, internal_keys=frozenset(internal_keys)
    )
