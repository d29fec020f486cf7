"""The manager's report: one self-contained HTML file (inline CSS, charts as base64 PNG) and
its JSON, from the usage records and the latest ``docfactory eval`` results.

The HTML is rendered from the JSON document only, so both always show the same figures.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from docfactory.measurement.usage import UsageData

DEFINITIONS = {
    "active_users": "Utilisateurs actifs : clés d'API distinctes ayant posé une question, "
    "fait une recherche ou donné un avis.",
    "questions": "Questions : demandes de réponse rédigée (Answer).",
    "searches": "Recherches : recherches de passages (Search).",
    "feedback": "Avis : retours des utilisateurs sur une réponse.",
    "mean_rating": "Note moyenne : moyenne des notes de 1 à 5 données.",
    "useful_rate": "Réponses jugées utiles : part des avis « utile » parmi les avis "
    "qui se prononcent.",
    "time_saved_minutes": "Temps gagné : somme des estimations des utilisateurs (en minutes, "
    "affichée en heures).",
    "citation_rate": "Taux de citation : part des réponses abouties qui citent au moins un "
    "document source.",
    "refusal_rate": "Taux de refus : part des demandes refusées par la politique d'usage "
    "(ou sans contexte suffisant) parmi toutes les demandes.",
    "review_approval_rate": "Taux d'approbation en relecture : part des réponses relues "
    "approuvées ou corrigées (et non rejetées).",
    "latency": "Temps de réponse : médiane (p50) et 95e centile (p95) des réponses abouties.",
}

PALETTE = ["#1f4e79", "#2e86c1", "#f39c12", "#27ae60", "#c0392b", "#8e44ad", "#16a085"]


# -- evaluation results ------------------------------------------------------------------


def latest_eval(path: Path) -> Path | None:
    """``path`` itself, or the newest ``*.json`` with a ``modes`` list in a folder."""
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    candidates = sorted(path.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for c in candidates:
        try:
            data = json.loads(c.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("modes"), list):
            return c
    return None


def load_eval(path: Path) -> dict[str, Any]:
    """The quality summary of a ``docfactory eval --out`` JSON (or any JSON with a ``modes``
    list of per-mode metrics, or a ``{mode: {metric: value}}`` mapping)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    modes_in: Any = data.get("modes") if isinstance(data, dict) else None
    if modes_in is None and isinstance(data, dict):
        modes_in = [{"mode": k, **v} for k, v in data.items() if isinstance(v, dict)]
    modes = []
    for m in modes_in or ():
        if not isinstance(m, Mapping):
            continue
        metrics = {
            k: float(v)
            for k, v in m.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "queries"
        }
        modes.append({"mode": str(m.get("mode", "?")), "queries": m.get("queries"), **metrics})
    return {
        "source": str(path),
        "modified": dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "dataset": data.get("dataset", "") if isinstance(data, dict) else "",
        "evaluated_queries": data.get("evaluated_queries") if isinstance(data, dict) else None,
        "embedding_model": data.get("embedding_model", "") if isinstance(data, dict) else "",
        "modes": modes,
        "answers": data.get("answers") if isinstance(data, dict) else None,
    }


# -- JSON document -----------------------------------------------------------------------


def build_report(
    data: UsageData,
    *,
    tenant: str | None = None,
    use_case: str | None = None,
    quality: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
    dossiers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    moment = now or dt.datetime.now(dt.UTC)
    return {
        "title": "Mesure des gains — assistant documentaire",
        "generated_at": moment.isoformat(timespec="seconds"),
        "period": {"from": data.period.start.isoformat(), "to": data.period.end.isoformat()},
        "filters": {"tenant": tenant, "use_case": use_case},
        "overall": data.record_for().as_dict(),
        "tenants": [r.as_dict() for r in data.per_tenant()],
        "groups": [r.as_dict() for r in data.per_group()],
        "quality": dict(quality) if quality else None,
        "dossiers": dict(dossiers) if dossiers else None,
        "definitions": DEFINITIONS,
    }


# -- formatting --------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/d"
    text = f"{value:,.{digits}f}".replace(",", "\u202f").replace(".", ",")
    return text


def _pct(value: float | None) -> str:
    return "n/d" if value is None else f"{_num(value * 100, 0)}\u00a0%"


def _hours(minutes: float) -> str:
    return f"{_num(minutes / 60, 1)}\u00a0h"


def _ms(value: float | None) -> str:
    return "n/d" if value is None else f"{_num(value / 1000, 2)}\u00a0s"


def _e(text: Any) -> str:
    return html.escape(str(text))


# -- charts ------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e5e8ec", linewidth=0.8)
    ax.set_axisbelow(True)


def _dates(daily: Sequence[Mapping[str, Any]]) -> Any:  # list of dates, for matplotlib
    return [dt.date.fromisoformat(d["date"]) for d in daily]


def chart_usage(overall: Mapping[str, Any]) -> str:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    daily = overall["daily"]
    days = _dates(daily)
    fig, ax = plt.subplots(figsize=(10, 2.8))
    ax.bar(days, [d["questions"] for d in daily], color=PALETTE[1], label="Questions", width=0.8)
    ax.bar(
        days,
        [d["searches"] for d in daily],
        bottom=[d["questions"] for d in daily],
        color="#aed6f1",
        label="Recherches",
        width=0.8,
    )
    ax2 = ax.twinx()
    ax2.plot(
        days,
        [d["active_users"] for d in daily],
        color=PALETTE[2],
        marker="o",
        markersize=3,
        linewidth=2,
        label="Utilisateurs actifs",
    )
    ax.set_ylabel("Demandes par jour")
    ax2.set_ylabel("Utilisateurs actifs")
    ax2.set_ylim(bottom=0)
    ax2.spines["top"].set_visible(False)
    _style(ax)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m"))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=12))  # type: ignore[no-untyped-call]
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", frameon=False)
    return _png(fig)


def chart_groups(groups: Sequence[Mapping[str, Any]]) -> str:
    import matplotlib.pyplot as plt

    labels = [f"{g['tenant']} · {g['use_case'] or '(aucun)'}" for g in groups]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.4 * max(3, len(groups)) + 1))
    ax, ax2 = axes
    y = list(range(len(groups)))
    ax.barh(y, [g["questions"] for g in groups], color=PALETTE[0])
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_title("Questions posées", fontsize=10)
    ratings = [g["mean_rating"] or 0 for g in groups]
    ax2.barh(y, ratings, color=PALETTE[3])
    ax2.set_yticks(y, [""] * len(y))
    ax2.invert_yaxis()
    ax2.set_xlim(0, 5)
    ax2.set_title("Note moyenne (sur 5)", fontsize=10)
    for i, r in enumerate(ratings):
        if r:
            ax2.text(r + 0.05, i, _num(r, 1), va="center", fontsize=9)
    for a in axes:
        _style(a)
        a.grid(axis="x", color="#e5e8ec", linewidth=0.8)
        a.grid(axis="y", visible=False)
    fig.tight_layout()
    return _png(fig)


def chart_ratings(overall: Mapping[str, Any]) -> str:
    import matplotlib.pyplot as plt

    counts = overall.get("rating_counts") or {}
    fig, ax = plt.subplots(figsize=(5, 2.8))
    values = [int(counts.get(str(i), 0)) for i in range(1, 6)]
    colors = ["#c0392b", "#e67e22", "#f1c40f", "#82c341", "#27ae60"]
    ax.bar([str(i) for i in range(1, 6)], values, color=colors)
    ax.set_xlabel("Note donnée (1 = mauvaise, 5 = excellente)")
    ax.set_ylabel("Nombre d'avis")
    _style(ax)
    return _png(fig)


def chart_answer_usage(overall: Mapping[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.8))
    parts = [
        (overall["used_as_is"], "Utilisée telle quelle", PALETTE[3]),
        (overall["edited"], "Modifiée", PALETTE[2]),
        (overall["discarded"], "Écartée", "#bdc3c7"),
    ]
    parts = [p for p in parts if p[0]]
    if parts:
        ax.pie(
            [p[0] for p in parts],
            labels=[f"{p[1]} ({p[0]})" for p in parts],
            colors=[p[2] for p in parts],
            autopct=lambda v: f"{v:.0f} %",
            startangle=90,
            counterclock=False,
            wedgeprops={"width": 0.45},
            pctdistance=0.78,
        )
    else:
        ax.text(0.5, 0.5, "Pas encore d'avis", ha="center", va="center")
        ax.axis("off")
    return _png(fig)


def chart_time_saved(overall: Mapping[str, Any]) -> str:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    daily = overall["daily"]
    days = _dates(daily)
    hours = [d["time_saved_minutes"] / 60 for d in daily]
    cumulative = []
    total = 0.0
    for h in hours:
        total += h
        cumulative.append(total)
    fig, ax = plt.subplots(figsize=(10, 2.6))
    ax.bar(days, hours, color="#a9dfbf", label="Heures gagnées dans la journée", width=0.8)
    ax.plot(days, cumulative, color=PALETTE[3], linewidth=2.5, label="Cumul (heures)")
    ax.fill_between(days, cumulative, color=PALETTE[3], alpha=0.08)
    ax.set_ylabel("Heures")
    _style(ax)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m"))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=12))  # type: ignore[no-untyped-call]
    ax.legend(loc="upper left", frameon=False)
    return _png(fig)


QUALITY_METRICS = (
    ("recall@5", "Bon document dans les 5 premiers"),
    ("ndcg@10", "Qualité du classement (nDCG@10)"),
    ("mrr@10", "Rang du premier bon document (MRR@10)"),
)


def chart_quality(quality: Mapping[str, Any]) -> str:
    import matplotlib.pyplot as plt

    modes = quality["modes"]
    metrics = [(k, label) for k, label in QUALITY_METRICS if any(k in m for m in modes)]
    if not metrics:
        keys = sorted({k for m in modes for k in m if k not in ("mode", "queries")})[:3]
        metrics = [(k, k) for k in keys]
    fig, ax = plt.subplots(figsize=(10, 2.8))
    width = 0.8 / max(1, len(metrics))
    for j, (key, label) in enumerate(metrics):
        xs = [i + j * width for i in range(len(modes))]
        vals = [float(m.get(key, 0.0)) for m in modes]
        ax.bar(xs, vals, width=width, color=PALETTE[j % len(PALETTE)], label=label)
        for x, v in zip(xs, vals, strict=True):
            ax.text(x, v + 0.01, _num(v, 2), ha="center", fontsize=8)
    ax.set_xticks(
        [i + width * (len(metrics) - 1) / 2 for i in range(len(modes))],
        [m["mode"] for m in modes],
    )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("Score (0 à 1)")
    _style(ax)
    ax.legend(loc="upper left", frameon=False, fontsize=8, ncols=len(metrics))
    return _png(fig)


# -- HTML --------------------------------------------------------------------------------

CSS = """
body{font-family:"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;background:#f4f6f8;
color:#1c2833}
header{background:#1f4e79;color:#fff;padding:24px 40px}
header h1{margin:0 0 6px;font-size:26px}
header p{margin:0;opacity:.85}
main{max-width:1180px;margin:0 auto;padding:24px 40px 48px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:20px 24px;
margin:0 0 22px}
h2{font-size:19px;margin:0 0 4px;color:#1f4e79}
.lead{color:#566573;margin:0 0 14px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:14px}
.card{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);
border-top:4px solid #2e86c1}
.card .v{font-size:28px;font-weight:600}
.card .l{color:#566573;font-size:13px}
.card.green{border-color:#27ae60}.card.orange{border-color:#f39c12}.card.red{border-color:#c0392b}
img.chart{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #e5e8ec;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f4f6f8;color:#34495e}
dl{columns:2;font-size:13px;color:#34495e}
dd{margin:0 0 8px}
.muted{color:#7f8c8d;font-size:12px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:22px}
.two section{margin:0 0 22px}
"""


def _card(value: str, label: str, cls: str = "") -> str:
    return (
        f'<div class="card {cls}"><div class="v">{value}</div>'
        f'<div class="l">{_e(label)}</div></div>'
    )


def _img(b64: str, alt: str) -> str:
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th>Filiale</th><th>Cas d'usage</th><th>Utilisateurs</th><th>Questions</th>"
        "<th>Recherches</th><th>Avis</th><th>Note /5</th><th>Utiles</th><th>Temps gagné</th>"
        "<th>Citations</th><th>Refus</th><th>Approbation</th><th>Réponse p50 / p95</th></tr>"
    )
    body = []
    for r in rows:
        body.append(
            "<tr>"
            f"<td>{_e(r['tenant'] if r['tenant'] != '*' else 'Toutes')}</td>"
            f"<td>{_e(r['use_case'] if r['use_case'] != '*' else 'Tous') or '(aucun)'}</td>"
            f"<td>{r['active_users']}</td><td>{r['questions']}</td><td>{r['searches']}</td>"
            f"<td>{r['feedback']}</td><td>{_num(r['mean_rating'], 1)}</td>"
            f"<td>{_pct(r['useful_rate'])}</td><td>{_hours(r['time_saved_minutes'])}</td>"
            f"<td>{_pct(r['citation_rate'])}</td><td>{_pct(r['refusal_rate'])}</td>"
            f"<td>{_pct(r['review_approval_rate'])}</td>"
            f"<td>{_ms(r['latency_p50_ms'])} / {_ms(r['latency_p95_ms'])}</td>"
            "</tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _dossiers_html(d: Mapping[str, Any] | None) -> list[str]:
    """Dossier workflows: runs, time per step and per dossier, reviewers' corrections."""
    if not d or not d.get("runs"):
        return []
    steps = d.get("step_ms", {})
    total = sum(d.get("step_total_ms", {}).values()) or 1.0
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_ms(v)}</td>"
        f"<td>{_pct(d['step_total_ms'].get(k, 0.0) / total)}</td></tr>"
        for k, v in steps.items()
    )
    dec = d.get("decisions", {})
    cards = "".join(
        [
            _card(_num(d["runs"]), "exécutions de dossiers"),
            _card(_pct(d.get("approval_rate")), "taux d'approbation (incomplets inclus)"),
            _card(_pct(d.get("rejection_rate")), "taux de rejet"),
            _card(_num(d.get("fields_amended", 0)), "champs corrigés par les valideurs"),
            _card(
                _ms(d.get("dossier_ms")),
                "délai médian jusqu'à la décision (depuis le démarrage, sans la file)",
            ),
        ]
    )
    if d.get("feedback"):
        cards += _card(_num(d["feedback"]), "avis sur des dossiers signés")
        cards += _card(_hours(d.get("time_saved_minutes", 0.0)), "temps gagné (dossiers)")
    fields = d.get("fields_corrected") or {}
    field_rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in fields.items())
    return [
        "<section><h2>Dossiers (workflows)</h2><p class='lead'>Exécutions de flux métier sur "
        f"la période : {_e(dec.get('APPROVE', 0))} approbation(s), "
        f"{_e(dec.get('AMEND', 0))} correction(s), {_e(dec.get('REJECT', 0))} rejet(s).</p>",
        f"<div class='cards'>{cards}</div>",
        f"<table><tr><th>Étape</th><th>Temps moyen</th><th>Part du temps</th></tr>{rows}</table>",
        (
            f"<table><tr><th>Champ corrigé</th><th>Corrections</th></tr>{field_rows}</table>"
            if field_rows
            else ""
        ),
        "</section>",
    ]


def render_html(report: Mapping[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    o = report["overall"]
    period = report["period"]
    start = dt.date.fromisoformat(period["from"]).strftime("%d/%m/%Y")
    end = dt.date.fromisoformat(period["to"]).strftime("%d/%m/%Y")
    filters = report["filters"]
    scope = ", ".join(
        x
        for x in (
            f"filiale {filters['tenant']}" if filters.get("tenant") else "toutes les filiales",
            f"cas d'usage {filters['use_case']}"
            if filters.get("use_case")
            else "tous les cas d'usage",
        )
    )
    weeks = [w for w in o["weekly"] if w["questions"] or w["active_users"]]
    weekly_users = max((w["active_users"] for w in o["weekly"]), default=0)
    per_user = o["questions"] / o["active_users"] if o["active_users"] else None
    cards = "".join(
        [
            _card(str(o["active_users"]), "utilisateurs actifs sur la période"),
            _card(str(o["questions"]), "questions posées à l'assistant"),
            _card(
                _hours(o["time_saved_minutes"]),
                "de temps gagné (estimé par les utilisateurs)",
                "green",
            ),
            _card(
                f"{_num(o['mean_rating'], 1)}&nbsp;/&nbsp;5" if o["mean_rating"] else "n/d",
                f"note moyenne ({o['feedback']} avis)",
                "orange",
            ),
            _card(_pct(o["useful_rate"]), "des avis jugent la réponse utile", "green"),
            _card(_pct(o["citation_rate"]), "des réponses citent leurs sources"),
            _card(_pct(o["refusal_rate"]), "des demandes refusées", "red"),
            _card(
                f"{_ms(o['latency_p50_ms'])}",
                f"temps de réponse médian (95 % en moins de {_ms(o['latency_p95_ms'])})",
            ),
        ]
    )
    groups = report["groups"]
    tenants = report["tenants"]
    parts = [
        "<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'>",
        f"<title>{_e(report['title'])} — {start} au {end}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{_e(report['title'])}</h1>",
        f"<p>Du {start} au {end} — {_e(scope)}. Généré le "
        f"{_e(report['generated_at'][:16].replace('T', ' à '))} UTC.</p></header><main>",
        "<section><h2>L'essentiel</h2><p class='lead'>",
        f"{o['active_users']} personnes ont utilisé l'assistant ({weekly_users} au plus sur une "
        f"semaine), pour {o['questions']} questions et {o['searches']} recherches"
        + (f", soit {_num(per_user, 1)} questions par utilisateur" if per_user else "")
        + f". Les utilisateurs estiment avoir gagné {_hours(o['time_saved_minutes'])}"
        f" sur {o['answers_with_feedback']} réponses évaluées.</p>",
        f"<div class='cards'>{cards}</div></section>",
        "<section><h2>Usage au fil du temps</h2><p class='lead'>Demandes par jour et "
        "nombre de personnes actives chaque jour. Une courbe qui se maintient indique une "
        "adoption durable.</p>",
        _img(chart_usage(o), "Usage quotidien"),
        "<p class='muted'>Utilisateurs actifs par semaine : "
        + (
            ", ".join(f"{w['week']} : {w['active_users']}" for w in weeks)
            if weeks
            else "aucune activité"
        )
        + "</p></section>",
        "<div class='two'><section><h2>Satisfaction</h2><p class='lead'>Notes données par "
        "les utilisateurs à chaque réponse.</p>",
        _img(chart_ratings(o), "Répartition des notes"),
        "</section><section><h2>Usage réel des réponses</h2><p class='lead'>Ce que les "
        "utilisateurs déclarent avoir fait de la réponse.</p>",
        _img(chart_answer_usage(o), "Usage des réponses"),
        "</section></div>",
        "<section><h2>Temps gagné</h2><p class='lead'>Estimation déclarée par les "
        "utilisateurs à chaque avis, cumulée sur la période.</p>",
        _img(chart_time_saved(o), "Temps gagné"),
        "</section>",
    ]
    if groups:
        parts += [
            "<section><h2>Par filiale et cas d'usage</h2><p class='lead'>Adoption et "
            "satisfaction de chaque cas d'usage.</p>",
            _img(chart_groups(groups), "Par cas d'usage"),
            _table([*tenants, *groups] if len(tenants) > 1 else groups),
            "</section>",
        ]
    parts.extend(_dossiers_html(report.get("dossiers")))
    quality = report.get("quality")
    if quality and quality.get("modes"):
        parts += [
            "<section><h2>Qualité des réponses (évaluation)</h2><p class='lead'>Dernière "
            f"évaluation automatique sur le jeu « {_e(quality.get('dataset') or '?')} » "
            f"({_e(quality.get('evaluated_queries') or '?')} questions, "
            f"{_e(quality.get('modified', '')[:10])}) : la recherche retrouve-t-elle le bon "
            "document ? 1 = toujours.</p>",
            _img(chart_quality(quality), "Qualité"),
        ]
        ans = quality.get("answers")
        if isinstance(ans, Mapping) and "citation_accuracy" in ans:
            parts.append(
                "<p>Réponses : citation exacte dans "
                f"{_pct(float(ans['citation_accuracy']))} des cas, réponse attendue présente "
                f"dans l'extrait cité dans {_pct(float(ans.get('answer_in_quote', 0.0)))}.</p>"
            )
        parts.append(f"<p class='muted'>Source : {_e(quality.get('source', ''))}</p></section>")
    else:
        parts.append(
            "<section><h2>Qualité des réponses (évaluation)</h2><p class='lead'>Aucun "
            "résultat d'évaluation fourni (<code>docfactory eval --out results.json</code>, "
            "puis <code>docfactory report --eval results.json</code>).</p></section>"
        )
    parts += [
        "<section><h2>Comment lire ce rapport</h2><dl>",
        *(f"<dd>{_e(text)}</dd>" for text in report["definitions"].values()),
        "</dl><p class='muted'>Sources : journal d'audit chaîné (chaque question, recherche, "
        "refus et décision de relecture) et avis des utilisateurs. « n/d » : pas de donnée "
        "sur la période.</p></section></main></body></html>",
    ]
    return "\n".join(parts)


def write_report(
    report: Mapping[str, Any], *, html_path: Path | None, json_path: Path | None
) -> None:
    if json_path is not None:
        json_path.write_text(
            json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    if html_path is not None:
        html_path.write_text(render_html(report), encoding="utf-8")
