"""A mail message (``.eml`` RFC 822, ``.msg`` Outlook) split into a body and its attachments.

The body is an RFC 822 message with the headers and the text (or HTML) body, attachments left
out; each attachment keeps its file name (a forwarded message becomes ``<subject>.eml``).
``.msg`` files are read with python-oxmsg (MIT)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import re
from email.message import EmailMessage, Message

from docfactory.archives.detect import OLE_MAGIC


def message_parts(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``(body, [(attachment name, bytes), ...])`` of an ``.eml`` or ``.msg`` message."""
    return _msg_parts(data) if data.startswith(OLE_MAGIC) else _eml_parts(data)


def _safe_name(text: str, fallback: str) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]", "", text or "").strip()
    return name[:200] or fallback


def _rfc822_body(headers: list[tuple[str, str]], plain: str, html: str) -> bytes:
    """A message with the headers and the text (or HTML) body only."""
    out = EmailMessage(policy=email.policy.default)
    for key, value in headers:
        if value:
            with contextlib.suppress(Exception):
                out[key] = value
    if plain.strip() or not html.strip():
        out.set_content(plain or "")
        if html.strip():
            out.add_alternative(html, subtype="html")
    else:
        out.set_content(html, subtype="html")
    return out.as_bytes()


def _eml_parts(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    headers = [(k, str(msg.get(k, ""))) for k in ("From", "To", "Cc", "Date", "Subject")]
    body = msg.get_body(preferencelist=("plain", "html"))
    plain = html = ""
    for kind in ("plain", "html"):
        part = msg.get_body(preferencelist=(kind,))
        if part is not None and part.get_content_type() == f"text/{kind}":
            with contextlib.suppress(Exception):
                text = str(part.get_content())
                plain, html = (text, html) if kind == "plain" else (plain, text)
    bodies = {id(p) for p in (msg.get_body(("plain",)), msg.get_body(("html",)), body) if p}
    attachments: list[tuple[str, bytes]] = []

    def walk(part: Message) -> None:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner_msg, Message):
                subject = str(inner_msg.get("Subject", "") or "message")
                name = part.get_filename() or f"{_safe_name(subject, 'message')}.eml"
                attachments.append((_safe_name(name, "message.eml"), inner_msg.as_bytes()))
            return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    walk(sub)
            return
        if id(part) in bodies:
            return
        if (
            ctype.startswith("image/")
            and part.get("Content-ID")
            and part.get_content_disposition() != "attachment"
        ):
            return  # an image shown inside the HTML body (logo, signature), not an attachment
        filename = part.get_filename()
        if part.get_content_disposition() == "attachment" or filename:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                attachments.append((_safe_name(filename or "", "attachment"), payload))

    walk(msg)
    return _rfc822_body(headers, plain, html), attachments


def _msg_parts(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    from oxmsg import Message as OutlookMessage

    msg = OutlookMessage.load(io.BytesIO(data))
    recipients = ", ".join(
        f'"{r.name}" <{r.email_address}>' if r.name else str(r.email_address)
        for r in msg.recipients
    )
    headers = [
        ("From", str(msg.sender or "")),
        ("To", recipients),
        ("Date", msg.sent_date.strftime("%a, %d %b %Y %H:%M:%S %z") if msg.sent_date else ""),
        ("Subject", str(msg.subject or "")),
    ]
    html = msg.html_body or ""
    attachments = [
        (_safe_name(a.file_name or "", "attachment"), a.file_bytes)
        for a in msg.attachments
        if a.file_bytes
    ]
    return _rfc822_body(headers, msg.body or "", html if isinstance(html, str) else ""), attachments
