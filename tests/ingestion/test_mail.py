"""Mail (.eml, .msg): the body and each attachment become documents linked to the message
(source URI ``...eml!/attachment``), each parsed by its own type, recursively (a forwarded
message, a zip) within the archive limits. The message is made by the test from real files."""

from __future__ import annotations

import io
import json
import zipfile
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from docfactory.archives import (
    ArchiveLimits,
    ArchiveMember,
    MemberError,
    is_archive,
    iter_archive,
)
from tests.conftest import shared_data
from tests.test_cli import _run

BODY = "Bonjour, vous trouverez ci-joint la synthèse de la réunion du CSE et le certificat."


def _members(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for item in iter_archive(path, path.name, limits):
        if isinstance(item, MemberError):
            out[item.path] = item.reason
            continue
        assert isinstance(item, ArchiveMember)
        with item.open() as s:
            out[item.path] = s.read()
    return out


def _mail(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    pdf = shared_data("travail-docs", "pdf", "reunion-cse-synthese.pdf")
    docx = shared_data("travail-docs", "docx", "certificat_de_travail.docx")
    fwd_docx = shared_data("travail-docs", "docx", "demande_rdv_rupture_conventionnelle.docx")
    forwarded = EmailMessage(policy=default_policy)
    forwarded["From"] = "rh@example.fr"
    forwarded["To"] = "direction@example.fr"
    forwarded["Subject"] = "Demande de rendez-vous"
    forwarded.set_content("Voici le modèle de demande de rendez-vous.")
    forwarded.add_attachment(
        fwd_docx.read_bytes(),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename=fwd_docx.name,
    )
    notes = io.BytesIO()
    with zipfile.ZipFile(notes, "w") as zf:
        zf.writestr("notes/cantine.md", "# Cantine\n\nLa cantine du siège ouvre à midi.")
    msg = EmailMessage(policy=default_policy)
    msg["From"] = "Secrétariat CSE <cse@example.fr>"
    msg["To"] = "salaries@example.fr"
    msg["Subject"] = "Synthèse de la réunion"
    msg.set_content(BODY)
    msg.add_alternative(f"<p>{BODY}</p>", subtype="html")
    msg.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename=pdf.name)
    msg.add_attachment(
        docx.read_bytes(), maintype="application", subtype="octet-stream", filename=docx.name
    )
    msg.add_attachment(forwarded)  # message/rfc822
    msg.add_attachment(
        notes.getvalue(), maintype="application", subtype="zip", filename="notes.zip"
    )
    out = tmp_path / "synthese.eml"
    out.write_bytes(msg.as_bytes())
    return out, {"pdf": pdf, "docx": docx, "fwd_docx": fwd_docx}


def test_eml_body_and_attachments_are_members(tmp_path: Path) -> None:
    mail, src = _mail(tmp_path)
    assert is_archive(mail.name, mail.read_bytes()[:4096])
    got = _members(mail)
    fwd = "Demande de rendez-vous.eml"
    assert list(got) == [
        "",
        src["pdf"].name,
        src["docx"].name,
        fwd,
        f"{fwd}!/{src['fwd_docx'].name}",
        "notes.zip!/notes/cantine.md",
    ]
    body = got[""]
    assert isinstance(body, bytes)
    parsed = message_from_bytes(body, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    plain = parsed.get_body(("plain",))
    assert plain is not None and BODY in plain.get_content()
    assert parsed["Subject"] == "Synthèse de la réunion"
    assert len(body) < 4096  # the body alone, attachments left out
    assert got[src["pdf"].name] == src["pdf"].read_bytes()
    assert got[src["docx"].name] == src["docx"].read_bytes()
    assert got[f"{fwd}!/{src['fwd_docx'].name}"] == src["fwd_docx"].read_bytes()
    # within the depth limit: at max_depth 1 the zip inside the message is not expanded, and a
    # forwarded message too deep would be one document (here depth 1 is allowed)
    shallow = _members(mail, ArchiveLimits(max_depth=0))
    assert shallow["notes.zip"] == "NESTING_TOO_DEEP"
    assert isinstance(shallow[fwd], bytes) and src["fwd_docx"].name not in shallow


def test_msg_body_and_attachment() -> None:
    got = _members(shared_data("formats", "fake-email-attachment.msg"))
    assert list(got) == ["", "fake-attachment.txt"]
    assert b"Here's the attachments!" in got[""]  # type: ignore[operator]
    assert isinstance(got["fake-attachment.txt"], bytes) and got["fake-attachment.txt"].strip()


@pytest.mark.slow
def test_mail_ingested_as_linked_documents(tmp_path: Path) -> None:
    mail, src = _mail(tmp_path)
    data = tmp_path / "data"
    r = _run(["ingest", str(mail), "--json", "--collection", "mail"], data, timeout=600)
    rows = {row["path"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert {row["status"] for row in rows.values()} == {"indexed"}, rows
    assert len(rows) == 6
    fwd = "Demande de rendez-vous.eml"
    assert set(rows) == {
        str(mail),
        f"{mail}!/{src['pdf'].name}",
        f"{mail}!/{src['docx'].name}",
        f"{mail}!/{fwd}",
        f"{mail}!/{fwd}!/{src['fwd_docx'].name}",
        f"{mail}!/notes.zip!/notes/cantine.md",
    }, sorted(rows)
    assert rows[f"{mail}!/{src['pdf'].name}"]["pages"] == 1  # parsed as a PDF
    # each one its own document, linked to the message by its source URI
    uri = str(mail.resolve())  # the CLI's scheme for local files may change; the path stays
    r = _run(["search", "cantine du siège", "--json", "--collection", "mail"], data)
    top = json.loads(r.stdout)["results"][0]["citation"]
    assert top["source_uri"].endswith(f"://{uri}!/notes.zip!/notes/cantine.md"), top
