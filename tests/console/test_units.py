"""Console pieces without a browser: translations, language choice, session expiry, charts."""

from __future__ import annotations

import re
from pathlib import Path

from docfactory.console import i18n
from docfactory.console.auth import PERMISSIONS, ROLES, SessionStore
from docfactory.console.backend import Caller
from docfactory.console.routes import bar_chart
from docfactory.measurement.v1 import measurement_service_pb2 as meas_pb

TEMPLATES = Path(i18n.__file__).parent / "templates"


def test_every_string_exists_in_both_languages_and_every_template_key_is_known() -> None:
    assert set(i18n.STRINGS["fr"]) == set(i18n.STRINGS["en"])
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+)["']""", path.read_text()))
    assert used and used <= set(i18n.STRINGS["fr"]), used - set(i18n.STRINGS["fr"])
    for lang in i18n.LANGS:
        for name, text in i18n.STRINGS[lang].items():
            placeholders = set(re.findall(r"{(\w+)}", text))
            assert placeholders == set(re.findall(r"{(\w+)}", i18n.STRINGS["fr"][name])), name


def test_language_choice() -> None:
    assert i18n.pick(None, None, None) == "fr"
    assert i18n.pick(None, None, "en-GB,en;q=0.9,fr;q=0.5") == "en"
    assert i18n.pick(None, None, "de-DE,fr;q=0.3,en;q=0.2") == "fr"
    assert i18n.pick(None, "en", "fr-FR") == "en"
    assert i18n.pick("fr", "en", "en") == "fr"
    assert i18n.pick("xx", None, "en;q=bad,fr") == "fr"
    assert i18n.translator("en")("approvals", n=1, m=2) == "Approvals: 1/2"


def test_sessions_expire_and_end() -> None:
    now = [1000.0]
    store = SessionStore(60, clock=lambda: now[0])
    caller = Caller("nord", "reviewer-a", frozenset({"reviewer"}), True)
    session = store.create("key", caller)
    assert store.get(session.session_id) is session
    assert session.may("inbox") and not session.may("jobs")
    assert session.check_csrf(session.csrf_token) and not session.check_csrf("x")
    assert not session.check_csrf(None)
    now[0] += 61
    assert store.get(session.session_id) is None and len(store) == 0
    other = store.create("key", caller)
    store.end(other.session_id)
    assert store.get(other.session_id) is None
    open_session = store.create("key", Caller("t", "k", frozenset(), False))
    assert all(open_session.may(p) for p in PERMISSIONS)  # no policy: as on the API
    assert all(roles <= ROLES for roles in PERMISSIONS.values())


def test_bar_chart_geometry() -> None:
    days = [
        meas_pb.DailyUsage(date="2025-03-01", questions=4, searches=2),
        meas_pb.DailyUsage(date="2025-03-02", questions=0, searches=8),
    ]
    chart = bar_chart(days, width=400, height=120)
    assert chart["peak"] == 8 and chart["first"] == "2025-03-01" and chart["last"] == "2025-03-02"
    heights = [b["h"] for b in chart["bars"]]
    assert heights == [50.0, 25.0, 0.0, 100.0]
    assert all(b["y"] + b["h"] == 100.0 for b in chart["bars"])
    assert bar_chart([])["bars"] == []
