"""Presidio recognizers for French personal data, with check digits where the identifier has one.

Each recognizer is a ``PatternRecognizer`` (regex with a base score + French context words);
``validate_result`` runs the check digits (``docfactory.pii.checks``): True raises the score to
1.0, False drops the match, None keeps the base score. Importing this module imports Presidio:
only ``docfactory.pii.detector`` does, lazily.
"""

from __future__ import annotations

from typing import Any

import phonenumbers
import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from docfactory.pii import checks

LANG = "fr"

# Entity types (Presidio names where Presidio has one).
NIR = "FR_NIR"
IBAN = "IBAN_CODE"
SIREN = "FR_SIREN"
SIRET = "FR_SIRET"
PHONE = "PHONE_NUMBER"
EMAIL = "EMAIL_ADDRESS"
ADDRESS = "FR_ADDRESS"
PERSON = "PERSON"

_SEP = r"[ .\-\u00a0]?"


class _Recognizer(PatternRecognizer):
    """A French recognizer from class attributes: ENTITY, PATTERNS, CONTEXT, MULTILINE."""

    ENTITY = ""
    PATTERNS: list[Pattern] = []  # noqa: RUF012
    CONTEXT: list[str] = []  # noqa: RUF012
    MULTILINE = False

    def __init__(self) -> None:
        super().__init__(
            supported_entity=self.ENTITY,
            patterns=self.PATTERNS,
            context=self.CONTEXT,
            supported_language=LANG,
            name=type(self).__name__,
            **({"global_regex_flags": regex.DOTALL | regex.MULTILINE} if self.MULTILINE else {}),
        )


class FrNirRecognizer(_Recognizer):
    """Numéro de sécurité sociale (NIR, 15 characters with its key)."""

    PATTERNS = [  # noqa: RUF012 - Presidio's convention
        Pattern(
            "NIR",
            r"(?<![0-9A-Za-z])[1-478]"
            + _SEP
            + r"\d{2}"
            + _SEP
            + r"\d{2}"
            + _SEP
            + r"(?:\d{2}|2[ABab])"
            + _SEP
            + r"\d{3}"
            + _SEP
            + r"\d{3}"
            + _SEP
            + r"\d{2}"
            + r"(?![0-9A-Za-z])",
            0.5,
        )
    ]
    CONTEXT = [  # noqa: RUF012
        "sécurité", "sociale", "nir", "insee", "assuré", "immatriculation", "numéro", "ss",
    ]  # fmt: skip

    ENTITY = NIR

    def validate_result(self, pattern_text: str) -> bool:
        return checks.nir_valid(pattern_text)


class FrIbanRecognizer(_Recognizer):
    """IBAN of France and other European countries: country length + mod-97.

    A greedy match may swallow a following token ("... 189 SAS"): the longest prefix that
    ends on a group boundary and passes the check wins."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "IBAN",
            r"(?<![0-9A-Za-z])[A-Z]{2}\d{2}(?:[ \u00a0\-]?[0-9A-Z]{1,4}){3,8}(?![0-9A-Za-z])",
            0.5,
        )
    ]
    CONTEXT = ["iban", "rib", "bancaire", "banque", "compte", "virement", "bic"]  # noqa: RUF012

    ENTITY = IBAN
    MULTILINE = True

    def validate_result(self, pattern_text: str) -> bool:
        return checks.iban_valid(pattern_text)

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        name = str(getattr(self, "name", "FrIbanRecognizer"))
        flags: int = self.global_regex_flags or 0
        patterns: list[Pattern] = list(self.PATTERNS)
        for pattern in patterns:
            for m in regex.finditer(pattern.regex, text, flags=flags):
                start, end = m.span()
                # candidate ends: the whole match, then each group boundary going left
                ends = [end] + [i for i in range(end - 1, start, -1) if text[i] in " \u00a0-"]
                for e in ends:
                    if not checks.iban_valid(text[start:e]):
                        continue
                    explanation = self.build_regex_explanation(
                        name, pattern.name, pattern.regex, pattern.score, True, flags
                    )
                    out.append(
                        RecognizerResult(
                            IBAN,
                            start,
                            e,
                            EntityRecognizer.MAX_SCORE,
                            analysis_explanation=explanation,
                            recognition_metadata={
                                RecognizerResult.RECOGNIZER_NAME_KEY: name,
                                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            },
                        )
                    )
                    break
        return out


class FrSirenRecognizer(_Recognizer):
    """SIREN (9 digits, Luhn). 1 in 10 random 9-digit numbers pass Luhn: a valid one keeps
    its base score (raised by context words such as SIREN / RCS) instead of 1.0."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "SIREN",
            r"(?<![0-9][ .\u00a0]?)(?<![0-9A-Za-z])\d{3}[ .\u00a0]?\d{3}[ .\u00a0]?\d{3}"
            r"(?![ .\u00a0]?[0-9])(?![0-9A-Za-z])",
            0.6,
        )
    ]
    CONTEXT = ["siren", "rcs", "immatriculée", "immatriculation", "société", "entreprise"]  # noqa: RUF012

    ENTITY = SIREN

    def validate_result(self, pattern_text: str) -> bool | None:
        return None if checks.siren_valid(pattern_text) else False


class FrSiretRecognizer(_Recognizer):
    """SIRET (SIREN + 5-digit establishment number, Luhn; La Poste's rule)."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "SIRET",
            r"(?<![0-9][ .\u00a0]?)(?<![0-9A-Za-z])\d{3}[ .\u00a0]?\d{3}[ .\u00a0]?\d{3}"
            r"[ .\u00a0]?\d{5}(?![ .\u00a0]?[0-9])(?![0-9A-Za-z])",
            0.5,
        )
    ]
    CONTEXT = ["siret", "établissement", "etablissement", "société", "entreprise"]  # noqa: RUF012

    ENTITY = SIRET

    def validate_result(self, pattern_text: str) -> bool:
        return checks.siret_valid(pattern_text)


class FrPhoneRecognizer(_Recognizer):
    """French phone numbers (0X XX XX XX XX, +33 / 0033, with or without (0)), validated by
    libphonenumber's French numbering plan."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "FR_PHONE",
            r"(?<![0-9+])(?:(?:\+|00)33[ .\-\u00a0]?(?:\(0\)[ .\-\u00a0]?)?|0)[1-9]"
            r"(?:[ .\-\u00a0]?\d{2}){4}(?![0-9])",
            0.5,
        )
    ]
    CONTEXT = ["tél", "tel", "téléphone", "telephone", "portable", "mobile", "fax", "appeler"]  # noqa: RUF012

    ENTITY = PHONE

    def validate_result(self, pattern_text: str) -> bool:
        raw = pattern_text.replace("(0)", "")
        # "+33 ..." is metropolitan France; a national 0... number may also be overseas
        # (0690 Guadeloupe, 0262 La Réunion...), which libphonenumber files under their region.
        regions = ("FR",) if raw.lstrip().startswith(("+", "00")) else _PHONE_REGIONS
        for region in regions:
            try:
                number = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                return False
            if phonenumbers.is_valid_number_for_region(number, region):
                return True
        return False


_PHONE_REGIONS = ("FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF")


class EmailRecognizer(_Recognizer):
    """E-mail addresses (RFC 5322's common subset; no public-suffix download, unlike
    Presidio's own, which would try the network through tldextract)."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "EMAIL",
            r"(?<![\w.+\-])[A-Za-z0-9](?:[A-Za-z0-9._%+\-]{0,63})@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])",
            0.5,
        )
    ]
    CONTEXT = ["courriel", "email", "e-mail", "mail", "adresse", "contact"]  # noqa: RUF012

    ENTITY = EMAIL

    def validate_result(self, pattern_text: str) -> bool:
        local, _, _domain = pattern_text.rpartition("@")
        return bool(local) and ".." not in pattern_text and not local.endswith(".")


_VOIE = (
    r"(?:rue|avenue|av\.|bd|boulevard|place|pl\.|all[ée]e|chemin|ch\.|impasse|quai|route|rte"
    r"|cours|square|passage|faubourg|fbg|rond-point|r[ée]sidence|lotissement|hameau|sentier"
    r"|villa|cit[ée]|esplanade|promenade|parvis|mail|voie|chauss[ée]e|lieu-dit|mont[ée]e)"
)
_CAP = r"[A-ZÉÈÊÀÂÎÔÛÇ0-9]"
_WORD = r"(?:[ldLD]['’])?" + _CAP + r"[\w\-’'.]*"
_LINK = r"(?:d[eu]s?|de\s+la|la|le|les|aux?|et|sur|sous|en|l['’]|d['’])"
_NAME = _WORD + r"(?:(?:[ \-]|\s+" + _LINK + r"\s*)" + _WORD + r"){0,5}"
_CITY = (
    r"[A-ZÉÈÊÀÂÎÔÛÇ][\w\-’']*(?:[ \-](?:[A-ZÉÈÊÀÂÎÔÛÇ][\w\-’']*|sur|sous|en|l[ea]s?|d[eu]s?|aux?))*"
)


class FrAddressRecognizer(_Recognizer):
    """French postal addresses: number (bis/ter) + type of way + name [, BP] [, postcode +
    commune [CEDEX]]. A postcode must be a real department (01-95, 2A/2B as 20, 97x/98x)."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "FR_ADDRESS",
            r"(?<![\w])\d{1,4}(?:\s?(?:bis|ter|quater|[A-D]))?,?\s+"
            + _VOIE
            + r"\s+(?:"
            + _LINK
            + r"\s*)?"
            + _NAME
            + r"(?:,?\s+(?:BP|CS)\s?\d{1,6})?"
            + r"(?:,?\s+\d{5}\s+"
            + _CITY
            + r"(?:\s+C[Ee][Dd][Ee][Xx](?:\s+\d{1,2})?)?)?",
            0.6,
        )
    ]
    CONTEXT = ["adresse", "domicile", "demeurant", "domicilié", "domiciliée", "siège", "situé"]  # noqa: RUF012

    ENTITY = ADDRESS
    MULTILINE = True

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for r in results:
            postcode = regex.search(r"\b(\d{5})\s+\D", text[r.start : r.end])
            if postcode and _postcode_ok(postcode.group(1)):
                r.score = 0.85
        return results


def _postcode_ok(code: str) -> bool:
    dept = int(code[:2])
    return 1 <= dept <= 95 or code[:3] in _OVERSEAS


_OVERSEAS = frozenset({"971", "972", "973", "974", "975", "976", "980", "986", "987", "988"})


_TITLE = r"(?:M\.|MM\.|Mme|Mmes|Mlle|Monsieur|Madame|Mademoiselle|Me|Maître|Dr|Docteur|Pr)"
_GIVEN = r"[A-ZÉÈÀÂÎÔÇ][a-zéèêëàâîïôöûüç]+(?:-[A-ZÉÈÀÂÎÔÇ][a-zéèêëàâîïôöûüç]+)?"
_FAMILY = r"(?:(?:de|du|de\s+la|d['’]|le|la)\s*)?[A-ZÉÈÀÂÎÔÇ][A-Za-zÉÈÀÂÎÔÇéèêëàâîïôöûüç'’\-]+"


class FrTitledNameRecognizer(_Recognizer):
    """A name after a civility (M., Mme, Maître, Docteur...): the strongest signal French
    letters give; complements spaCy's PER, which misses many names in legal prose."""

    PATTERNS = [  # noqa: RUF012
        Pattern(
            "TITLED_NAME",
            r"(?<=\b"
            + _TITLE
            + r"\s{1,2})(?:"
            + _GIVEN
            + r"\s+)?"
            + _FAMILY
            + r"(?:[ \-]"
            + _FAMILY
            + r")?",
            0.85,
        )
    ]

    ENTITY = PERSON
    MULTILINE = True

    def validate_result(self, pattern_text: str) -> bool | None:
        words = [w.strip("'’,.").lower() for w in pattern_text.split()]
        return False if not words or any(w in _NOT_NAMES for w in words) else None


#: Words that follow a civility but are no name ("Monsieur le Président", "Madame la Ministre").
_NOT_NAMES = frozenset(
    {"le", "la", "les", "l", "président", "presidente", "présidente", "ministre", "directeur",
     "directrice", "maire", "préfet", "préfète", "juge", "procureur", "x", "y", "z", "nom",
     "prénom", "prenom", "noms", "prénoms"}
)  # fmt: skip


def custom_recognizers() -> list[Any]:
    return [
        FrNirRecognizer(),
        FrIbanRecognizer(),
        FrSirenRecognizer(),
        FrSiretRecognizer(),
        FrPhoneRecognizer(),
        EmailRecognizer(),
        FrAddressRecognizer(),
        FrTitledNameRecognizer(),
    ]
