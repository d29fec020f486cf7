"""The analysis note of a run, assembled extractively (no generative model): the flow's
outline filled with the documents, the fields (each with a ``[n]`` citation of its verbatim
quote), the check results and the passages retrieved from the rule collections — labelled
extractive, as Answer does without a generator.

Outline headings are matched by keyword (synthèse/summary, pièces/documents,
données/fields, contrôles/checks, règles/rules, avis/opinion); any other heading is left for
the reviewer to fill.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from docfactory.workflows.flows import FlowSpec


@dataclass(frozen=True)
class Passage:
    document_id: str
    filename: str
    page: int
    quote: str
    score: float = 0.0
    collection: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_OUTCOME_FR = {"PASSED": "conforme", "FAILED": "NON CONFORME", "NOT_EVALUATED": "non évalué"}
_OUTCOME_EN = {"PASSED": "passed", "FAILED": "FAILED", "NOT_EVALUATED": "not evaluated"}


def _fold(text: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn"
    )


def _section(heading: str) -> str:
    h = _fold(heading)
    for key, words in (
        ("summary", ("synthese", "summary", "resume")),
        ("documents", ("piece", "document")),
        ("fields", ("donnee", "field", "extrait", "data")),
        ("checks", ("controle", "check", "verification")),
        ("rules", ("regle", "rule", "reference")),
        ("opinion", ("avis", "opinion", "proposition", "recommend")),
    ):
        if any(w in h for w in words):
            return key
    return ""


def _short(quote: str, limit: int = 160) -> str:
    q = " ".join(quote.split())
    return q if len(q) <= limit else q[: limit - 1] + "…"


def draft_note(flow: FlowSpec, result: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(Markdown note, citations) from a run's draft result."""
    fr = flow.language == "fr"
    citations: list[dict[str, Any]] = []
    docs = list(result.get("documents", []))
    checks = list(result.get("checks", []))
    passages = list(result.get("passages", []))
    names = {d["document_id"]: d["filename"] for d in docs}

    def cite(document_id: str, page: int, quote: str, source: str) -> int:
        for c in citations:
            if (c["document_id"], c["page"], c["quote"], c["source"]) == (
                document_id,
                page,
                quote,
                source,
            ):
                return int(c["marker"])
        marker = len(citations) + 1
        citations.append(
            {
                "marker": marker,
                "document_id": document_id,
                "filename": names.get(document_id, ""),
                "page": page,
                "quote": quote,
                "source": source,
            }
        )
        return marker

    def fields_md() -> list[str]:
        lines = []
        for d in docs:
            spec = flow.doc_type(d.get("type", ""))
            if spec is None:
                continue
            lines.append(f"**{spec.label}** ({d['filename']})")
            for f in d.get("fields", []):
                title = f.get("title") or f["name"]
                if f["status"] == "AMENDED":
                    who = f.get("amended_by", "")
                    tag = f"corrigé par {who}" if fr else f"amended by {who}"
                    lines.append(f"- {title} : {f['value']} ({tag})")
                elif f["status"] == "FOUND" and f.get("evidence"):
                    ev = f["evidence"]
                    n = cite(ev["document_id"], int(ev.get("page") or 0), ev["quote"], "dossier")
                    lines.append(f"- {title} : {f['value']} [{n}]")
                elif f["status"] == "UNSUPPORTED":
                    msg = (
                        "valeur non étayée par le document, à vérifier"
                        if fr
                        else ("value not supported by the document, to check")
                    )
                    lines.append(f"- {title} : {msg}")
                else:
                    lines.append(f"- {title} : " + ("non trouvé" if fr else "not found"))
            lines.append("")
        return lines or ["(aucune donnée extraite)" if fr else "(no field extracted)"]

    failed = [c for c in checks if c["outcome"] == "FAILED"]
    blocking = [c for c in failed if c.get("severity", "blocking") == "blocking"]
    unknown = [c for c in checks if c["outcome"] == "NOT_EVALUATED"]
    outcome_names = _OUTCOME_FR if fr else _OUTCOME_EN

    out = [f"# {flow.title if not flow.note.title else flow.note.title}", ""]
    out.append(
        "_Note extractive assemblée sans modèle génératif : chaque donnée cite sa source._"
        if fr
        else "_Extractive note assembled without a generative model: every value cites its source._"
    )
    out.append("")
    for heading in flow.note.outline:
        kind = _section(heading)
        out.append(f"## {heading}")
        out.append("")
        if kind == "summary":
            typed = sum(1 for d in docs if d.get("type"))
            if fr:
                out.append(
                    f"Dossier de {len(docs)} pièce(s), dont {typed} reconnue(s). "
                    f"{len(checks)} contrôle(s) : {len(checks) - len(failed) - len(unknown)} "
                    f"conforme(s), {len(failed)} non conforme(s), {len(unknown)} non évalué(s)."
                )
            else:
                out.append(
                    f"Dossier of {len(docs)} document(s), {typed} recognised. "
                    f"{len(checks)} check(s): {len(checks) - len(failed) - len(unknown)} passed, "
                    f"{len(failed)} failed, {len(unknown)} not evaluated."
                )
        elif kind == "documents":
            for d in docs:
                spec = flow.doc_type(d.get("type", ""))
                label = spec.label if spec else ("type non reconnu" if fr else "unrecognised")
                out.append(f"- {d['filename']} : {label} ({d.get('type_confidence', 0):.2f})")
        elif kind == "fields":
            out.extend(fields_md())
        elif kind == "checks":
            for c in checks:
                out.append(
                    f"- {c['label'] or c['rule']} : {outcome_names.get(c['outcome'], c['outcome'])}"
                    + (f" — {c['detail']}" if c.get("detail") and c["outcome"] != "PASSED" else "")
                )
            if not checks:
                out.append("(aucun contrôle)" if fr else "(no check)")
        elif kind == "rules":
            for err in result.get("retrieval_errors", [])[:3]:
                out.append(
                    f"- (recherche indisponible : {_short(str(err))})"
                    if fr
                    else f"- (retrieval unavailable: {_short(str(err))})"
                )
            if not passages:
                out.append(
                    "(aucun passage des règles internes retrouvé)"
                    if fr
                    else "(no passage of the internal rules found)"
                )
            for p in passages:
                n = cite(p["document_id"], int(p.get("page") or 0), p["quote"], "rules")
                names.setdefault(p["document_id"], p.get("filename", ""))
                citations[n - 1]["filename"] = p.get("filename", "")
                out.append(f"- {p.get('question', '')} « {_short(p['quote'])} » [{n}]")
        elif kind == "opinion":
            if blocking:
                lst = ", ".join(c["label"] or c["rule"] for c in blocking)
                out.append(
                    f"Avis défavorable en l'état : contrôle(s) bloquant(s) non conforme(s) : {lst}."
                    if fr
                    else f"Unfavourable as it stands: blocking check(s) failed: {lst}."
                )
            elif unknown:
                out.append(
                    "Avis réservé : des données manquent ; le valideur doit les compléter."
                    if fr
                    else "Reserved: some values are missing; the reviewer must complete them."
                )
            else:
                out.append(
                    "Avis favorable proposé, sous réserve de la validation."
                    if fr
                    else "Favourable opinion proposed, subject to sign-off."
                )
        else:
            out.append("(à rédiger par le valideur)" if fr else "(for the reviewer to write)")
        out.append("")
    if citations:
        out.append("## Sources")
        out.append("")
        for c in citations:
            page = f", p. {c['page']}" if c["page"] else ""
            out.append(f"[{c['marker']}] {c['filename']}{page} : « {_short(c['quote'])} »")
    return "\n".join(out).rstrip() + "\n", citations
