"""Grounded-answer prompt: answer only from the numbered passages, in the question's language,
cite passages as [n], and say so when the passages do not contain the answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SYSTEM_PROMPT = {
    "fr": (
        "Tu es l'assistant documentaire d'un groupe financier public. Réponds à la question "
        "UNIQUEMENT à partir des extraits numérotés fournis. Cite chaque affirmation avec le "
        "numéro de l'extrait entre crochets, par exemple [1] ou [2][3]. Réponds en français, "
        "de façon concise et factuelle. Si les extraits ne permettent pas de répondre, dis "
        "clairement : « Je ne sais pas : les documents fournis ne permettent pas de répondre. » "
        "et n'invente rien."
    ),
    "en": (
        "You are the document assistant of a public financial group. Answer the question ONLY "
        "from the numbered passages provided. Cite every claim with the passage number in square "
        "brackets, e.g. [1] or [2][3]. Answer in English, concisely and factually. If the passages "
        "do not contain the answer, say clearly: \"I don't know: the provided documents do not "
        'answer this question." and do not make anything up.'
    ),
}

DONT_KNOW = {
    "fr": "Je ne sais pas : les documents fournis ne permettent pas de répondre à cette question.",
    "en": "I don't know: the provided documents do not answer this question.",
}

EXTRACTIVE_LABEL = {
    "fr": "Réponse extractive (aucun modèle génératif configuré) — extraits les plus pertinents :",
    "en": "Extractive answer (no generative model configured) — most relevant passages:",
}


@dataclass(frozen=True)
class PromptPassage:
    marker: int
    text: str
    source: str  # "file.pdf, p. 3 — Section"
    headings: tuple[str, ...] = ()  # the chunk's section path: context, never an answer


def build_messages(
    question: str,
    passages: Sequence[PromptPassage],
    language: str,
    history: Sequence[tuple[str, str]] = (),
) -> list[dict[str, str]]:
    """System prompt, the earlier turns of the conversation (``(role, text)``, roles "user" /
    "assistant"), then the passages and the question."""
    lang = language if language in SYSTEM_PROMPT else "en"
    context = "\n\n".join(f"[{p.marker}] ({p.source})\n{p.text}" for p in passages)
    head = "Extraits" if lang == "fr" else "Passages"
    sep = " :" if lang == "fr" else ":"
    user = f"{head}{sep}\n\n{context}\n\nQuestion{sep} {question}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT[lang]},
        *({"role": role, "content": text} for role, text in history),
        {"role": "user", "content": user},
    ]


#: Characters of earlier user turns added to a follow-up question for retrieval.
CONTEXT_CHARS = 1500


def contextual_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The text retrieval runs on for a follow-up question: the last two user turns, then the
    question (the question is kept whole; older context is cut first)."""
    earlier = [text for role, text in history if role == "user"][-2:]
    context = " ".join(earlier)[-CONTEXT_CHARS:]
    return f"{context} {question}".strip() if context else question


_MARKER = re.compile(r"\[(\d{1,3})\]")


def cited_markers(text: str, available: int) -> list[int]:
    """Markers the generated text actually cites, in order of first use."""
    seen: list[int] = []
    for m in _MARKER.finditer(text):
        n = int(m.group(1))
        if 1 <= n <= available and n not in seen:
            seen.append(n)
    return seen
