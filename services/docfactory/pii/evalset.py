"""A labelled French personal-data set over real documents, with planted identifiers.

The host texts are real (``../shared/data``: Code du travail articles, the Ministère du
travail's DOCX letter templates, service-public.fr fiches) and stay outside the repository.
Every planted value is SYNTHETIC: names drawn from common French first names and surnames,
made-up street addresses, NIR / IBAN / SIREN / SIRET generated with valid check digits from a
seeded random generator, phone numbers in the French numbering plan, e-mails on reserved
domains (example.fr / exemple.fr). Decoys (NIR, IBAN, SIREN with a wrong key) are planted too
and labelled as nothing: they measure precision.

The generator is deterministic: the same data folder yields the same samples, and the labels
committed under ``tests/pii/data/`` record each sample's text digest, so a changed source is
reported, not silently mis-scored.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docfactory.pii import checks

SEED = 16

FIRST = (
    "Jean", "Marie", "Pierre", "Nathalie", "Michel", "Isabelle", "Philippe", "Sylvie", "Alain",
    "Catherine", "Nicolas", "Sophie", "Julien", "Camille", "Thomas", "Aurélie", "Laurent",
    "Émilie", "Mathieu", "Céline", "François", "Hélène", "Stéphane", "Léa", "Antoine", "Chloé",
)  # fmt: skip
LAST = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "André", "Lefebvre", "Mercier", "Dupont",
    "Lambert", "Bonnet", "François", "Martinez", "Legrand", "Garnier", "Faure", "Rousseau",
)  # fmt: skip
TITLES = ("M.", "Mme", "Monsieur", "Madame", "Maître")
VOIES = ("rue", "avenue", "boulevard", "place", "allée", "chemin", "impasse", "quai", "route")
STREETS = (
    "des Lilas", "Victor Hugo", "de la République", "du Général Leclerc", "Pasteur",
    "des Écoles", "Jean Jaurès", "de la Gare", "du Moulin", "des Acacias", "Saint-Michel",
    "de l'Église", "du Port", "des Tilleuls", "Gambetta", "de Verdun",
)  # fmt: skip
CITIES = (
    ("75011", "Paris"), ("69003", "Lyon"), ("13001", "Marseille"), ("31000", "Toulouse"),
    ("44000", "Nantes"), ("59000", "Lille"), ("67000", "Strasbourg"), ("33000", "Bordeaux"),
    ("20000", "Ajaccio"), ("97400", "Saint-Denis"), ("35000", "Rennes"), ("21000", "Dijon"),
    ("76600", "Le Havre"), ("42000", "Saint-Étienne"), ("06000", "Nice"), ("29200", "Brest"),
)  # fmt: skip
COMPANIES = ("Durand Logistique", "Atelier Moreau", "Boulangerie Petit", "Transports Roux")
IBAN_COUNTRIES = ("FR", "FR", "FR", "DE", "ES", "IT", "BE", "NL", "LU", "PT")

# Types scored, in report order.
TYPES = (
    "FR_NIR", "IBAN_CODE", "FR_SIREN", "FR_SIRET", "PHONE_NUMBER", "EMAIL_ADDRESS",
    "FR_ADDRESS", "PERSON",
)  # fmt: skip
CHECK_DIGIT_TYPES = ("FR_NIR", "IBAN_CODE", "FR_SIREN", "FR_SIRET")


@dataclass(frozen=True)
class Label:
    type: str
    start: int
    end: int
    value: str  # synthetic, planted by the generator


@dataclass
class Sample:
    id: str  # source reference (article id, template name, fiche name)
    text: str
    labels: list[Label] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


# -- synthetic values --------------------------------------------------------------------


class Planter:
    def __init__(self, seed: int = SEED) -> None:
        self.r = random.Random(seed)

    def person(self) -> str:
        return f"{self.r.choice(FIRST)} {self.r.choice(LAST)}"

    def nir(self, *, valid: bool = True) -> str:
        r = self.r
        sex = r.choice("12")
        yy = f"{r.randint(40, 99):02d}"
        mm = f"{r.randint(1, 12):02d}"
        dept = r.choice(["75", "69", "13", "2A", "2B", "59", "33", "44", "31", "06"])
        body = f"{sex}{yy}{mm}{dept}{r.randint(1, 999):03d}{r.randint(1, 999):03d}"
        key = checks.nir_key(body)
        assert key is not None
        if not valid:
            key = (key + r.randint(1, 90)) % 97 or 1
        k = f"{key:02d}"
        if r.random() < 0.5:
            return f"{body[0]} {body[1:3]} {body[3:5]} {body[5:7]} {body[7:10]} {body[10:13]} {k}"
        return body + k

    def iban(self, *, valid: bool = True) -> str:
        r = self.r
        country = r.choice(IBAN_COUNTRIES)
        length = checks.IBAN_LENGTHS[country]
        digits_only = country in ("DE", "BE", "LU", "PT", "ES")
        alphabet = "0123456789" if digits_only else "0123456789" * 3 + "ABCDEFGHJKLMNPQRSTUVWXYZ"
        if country == "NL":
            bban = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
            bban += "".join(r.choice("0123456789") for _ in range(10))
        elif country in ("FR", "IT"):
            bban = "".join(r.choice("0123456789") for _ in range(length - 4))
            if country == "IT":
                bban = r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + bban[1:]
        else:
            bban = "".join(r.choice(alphabet) for _ in range(length - 4))
        check = checks.iban_check_digits(country, bban)
        if not valid:
            check = f"{(int(check) + r.randint(1, 50)) % 97 + 2:02d}"
        iban = country + check + bban
        if r.random() < 0.6:
            return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return iban

    def siren(self, *, valid: bool = True) -> str:
        partial = "".join(self.r.choice("0123456789") for _ in range(8))
        partial = str(self.r.randint(1, 9)) + partial[1:]
        digit = checks.luhn_digit(partial)
        if not valid:
            digit = str((int(digit) + self.r.randint(1, 9)) % 10)
        s = partial + digit
        return f"{s[:3]} {s[3:6]} {s[6:]}" if self.r.random() < 0.6 else s

    def siret(self) -> str:
        r = self.r
        if r.random() < 0.1:  # La Poste: digit sum multiple of 5
            while True:
                nic = f"{r.randint(1, 99999):05d}"
                s = checks.LA_POSTE_SIREN + nic
                if sum(int(c) for c in s) % 5 == 0 and not checks.luhn_ok(s):
                    break
        else:
            siren = checks.compact(self.siren())
            partial = siren + f"{r.randint(1, 9999):04d}"
            s = partial + checks.luhn_digit(partial)
        return f"{s[:3]} {s[3:6]} {s[6:9]} {s[9:]}" if r.random() < 0.6 else s

    def phone(self) -> str:
        """A number of the French numbering plan (metropolitan: +33 and 01-07 ranges that
        libphonenumber knows as French)."""
        import phonenumbers

        while True:
            value = self._phone()
            number = phonenumbers.parse(value, "FR")
            if phonenumbers.is_valid_number_for_region(number, "FR"):
                return value

    def _phone(self) -> str:
        r = self.r
        first = r.choice("1234567")
        # 01-05: geographic, 06/07: mobile (07 needs 3-9 next)
        rest = [f"{r.randint(10, 99):02d}" for _ in range(4)]
        if first == "7":
            rest[0] = f"{r.randint(30, 99):02d}"
        style = r.randrange(4)
        if style == 0:
            return f"0{first} " + " ".join(rest)
        if style == 1:
            return f"0{first}." + ".".join(rest)
        if style == 2:
            return f"+33 {first} " + " ".join(rest)
        return f"0{first}" + "".join(rest)

    def email(self, person: str) -> str:
        first, last = person.lower().split(" ", 1)
        table = str.maketrans("éèêëàâîïôöûüç", "eeeeaaiioouuc")
        user = f"{first}.{last}".translate(table).replace(" ", "")
        return f"{user}@{self.r.choice(['example.fr', 'exemple.fr', 'example.com'])}"

    def street(self) -> str:
        """A street address without postcode ("4, place Gambetta à Dijon")."""
        city = self.r.choice(CITIES)[1]
        return f"{self.r.randint(1, 99)}, {self.r.choice(VOIES)} {self.r.choice(STREETS)} à {city}"

    def address(self) -> str:
        r = self.r
        num = str(r.randint(1, 180)) + (r.choice([" bis", " ter", ""]) if r.random() < 0.2 else "")
        cp, city = r.choice(CITIES)
        return f"{num} {r.choice(VOIES)} {r.choice(STREETS)}, {cp} {city}"


# -- templates -----------------------------------------------------------------------------

# Each template: text with {slots}; slot name -> type ('' = decoy, not personal data).
TEMPLATES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "Le salarié, {title} {person}, numéro de sécurité sociale {nir}, demeurant {address}.",
        {"person": "PERSON", "nir": "FR_NIR", "address": "FR_ADDRESS"},
    ),
    (
        "Coordonnées bancaires pour le virement du solde : IBAN {iban} (titulaire : "
        "{title} {person}).",
        {"iban": "IBAN_CODE", "person": "PERSON"},
    ),
    (
        "L'employeur, la société {company} (SIREN {siren}), dont le siège est situé {address}, "
        "établissement SIRET {siret}.",
        {"siren": "FR_SIREN", "address": "FR_ADDRESS", "siret": "FR_SIRET"},
    ),
    (
        "Pour toute question, contactez {person2} au {phone} ou par courriel à {email}.",
        {"person2": "PERSON", "phone": "PHONE_NUMBER", "email": "EMAIL_ADDRESS"},
    ),
    (
        "Fait à {city}, le 3 mars 2025. Signature : {person2}. Tél. {phone}.",
        {"person2": "PERSON", "phone": "PHONE_NUMBER"},
    ),
    (
        "Le bulletin de {title} {person} mentionne le NIR {nir} et le RIB {iban}.",
        {"person": "PERSON", "nir": "FR_NIR", "iban": "IBAN_CODE"},
    ),
    (
        "Entreprise immatriculée au RCS sous le numéro {siren} ; adresse de correspondance : "
        "{address}.",
        {"siren": "FR_SIREN", "address": "FR_ADDRESS"},
    ),
    (
        "Dossier interne n° {bad_nir}, référence de compte {bad_iban}, code {bad_siren}.",
        {"bad_nir": "", "bad_iban": "", "bad_siren": ""},
    ),
    # Names without a civility and an address without a postcode: spaCy alone must find them.
    (
        "Le dossier de {person} a été transmis au service du personnel le 4 avril.",
        {"person": "PERSON"},
    ),
    (
        "{person2}, responsable des ressources humaines, est joignable au {phone}.",
        {"person2": "PERSON", "phone": "PHONE_NUMBER"},
    ),
    (
        "La salariée est domiciliée au {street}, et son conjoint, {person}, y réside aussi.",
        {"street": "FR_ADDRESS", "person": "PERSON"},
    ),
)


def _fill(tpl: str, slots: dict[str, str], p: Planter) -> tuple[str, list[Label]]:
    person = p.person()
    values: dict[str, str] = {
        "title": p.r.choice(TITLES),
        "person": person,
        "person2": p.person(),
        "company": p.r.choice(COMPANIES),
        "city": p.r.choice(CITIES)[1],
        "nir": p.nir(),
        "iban": p.iban(),
        "siren": p.siren(),
        "siret": p.siret(),
        "address": p.address(),
        "street": p.street(),
        "bad_nir": p.nir(valid=False),
        "bad_iban": p.iban(valid=False),
        "bad_siren": p.siren(valid=False),
    }
    values["phone"] = p.phone()
    values["email"] = p.email(values["person2"])
    out: list[str] = []
    labels: list[Label] = []
    pos = 0
    length = 0
    while True:
        i = tpl.find("{", pos)
        if i < 0:
            out.append(tpl[pos:])
            break
        j = tpl.index("}", i)
        out.append(tpl[pos:i])
        length += i - pos
        name = tpl[i + 1 : j]
        value = values[name]
        if slots.get(name):
            labels.append(Label(slots[name], length, length + len(value), value))
        out.append(value)
        length += len(value)
        pos = j + 1
    return "".join(out), labels


# -- real host texts -----------------------------------------------------------------------


def _code_du_travail(data: Path, n: int) -> Iterator[tuple[str, str]]:
    path = data / "code-du-travail" / "articles.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows = [r for r in rows if 400 <= len(r.get("texte") or "") <= 1600]
    step = max(1, len(rows) // n)
    for r in rows[::step][:n]:
        yield f"code-du-travail:{r['id']}", str(r["texte"]).replace("\r", "")


def _fiches(data: Path, n: int) -> Iterator[tuple[str, str]]:
    path = data / "service-public" / "fiches-txt.zip"
    with zipfile.ZipFile(path) as z:
        names = sorted(x for x in z.namelist() if x.endswith(".txt"))
        step = max(1, len(names) // n)
        for name in names[::step][:n]:
            text = z.read(name).decode("utf-8", "replace")
            yield f"service-public:{Path(name).name}", text[:1500]


def _docx(data: Path, n: int) -> Iterator[tuple[str, str]]:
    import docx  # python-docx, installed with the parsing extra

    for path in sorted((data / "travail-docs" / "docx").glob("*.docx"))[:n]:
        doc = docx.Document(io.BytesIO(path.read_bytes()))
        text = "\n".join(p.text for p in doc.paragraphs if p.text.strip())
        yield f"travail-docs:{path.name}", text[:1500]


def host_texts(data: Path) -> list[tuple[str, str]]:
    return [*_code_du_travail(data, 30), *_docx(data, 15), *_fiches(data, 25)]


def build(data: Path, seed: int = SEED) -> list[Sample]:
    """The samples: each real host text with 2-3 planted sentences between its paragraphs."""
    p = Planter(seed)
    samples: list[Sample] = []
    for k, (ref, host) in enumerate(host_texts(data)):
        paras = [x for x in host.split("\n") if x.strip()]
        planted = [TEMPLATES[(k + i * 3) % len(TEMPLATES)] for i in range(2 + k % 2)]
        slots = sorted(p.r.sample(range(len(paras) + 1), min(len(planted), len(paras) + 1)))
        while len(slots) < len(planted):
            slots.append(len(paras))
        text = ""
        labels: list[Label] = []
        pi = 0
        for i in range(len(paras) + 1):
            while pi < len(planted) and slots[pi] == i:
                sentence, ls = _fill(planted[pi][0], planted[pi][1], p)
                base = len(text)
                labels += [Label(x.type, x.start + base, x.end + base, x.value) for x in ls]
                text += sentence + "\n"
                pi += 1
            if i < len(paras):
                text += paras[i] + "\n"
        samples.append(Sample(ref, text, labels))
    return samples


def labels_jsonl(samples: Sequence[Sample]) -> str:
    """The committed form: source reference, text digest and planted labels (no host text)."""
    lines = []
    for s in samples:
        row: dict[str, Any] = {
            "source": s.id,
            "sha256_16": s.digest,
            "labels": [[x.type, x.start, x.end, x.value] for x in s.labels],
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def check_against(samples: Sequence[Sample], committed: str) -> list[str]:
    """Differences between generated samples and committed labels (empty = identical)."""
    rows = [json.loads(x) for x in committed.splitlines() if x.strip()]
    problems = []
    if len(rows) != len(samples):
        problems.append(f"{len(samples)} samples generated, {len(rows)} labelled")
    for s, row in zip(samples, rows, strict=False):
        if row["source"] != s.id or row["sha256_16"] != s.digest:
            problems.append(f"{s.id}: text differs from the labelled version")
        elif [list(x) for x in row["labels"]] != [
            [x.type, x.start, x.end, x.value] for x in s.labels
        ]:
            problems.append(f"{s.id}: labels differ")
    return problems


# -- scoring -------------------------------------------------------------------------------


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union else 0.0


def score(
    samples: Sequence[Sample], predictions: Sequence[Sequence[tuple[str, int, int]]]
) -> dict[str, Score]:
    """Per-type counts: a prediction is right when a gold label of its type overlaps it with
    IoU >= 0.5 (one prediction per label)."""
    out = {t: Score() for t in TYPES}
    for s, preds in zip(samples, predictions, strict=True):
        used: set[int] = set()
        for typ, start, end in preds:
            if typ not in out:
                continue
            match = next(
                (
                    i
                    for i, g in enumerate(s.labels)
                    if i not in used
                    and g.type == typ
                    and _iou((start, end), (g.start, g.end)) >= 0.5
                ),
                None,
            )
            if match is None:
                out[typ].fp += 1
            else:
                used.add(match)
                out[typ].tp += 1
        for i, g in enumerate(s.labels):
            if i not in used:
                out[g.type].fn += 1
    return out


def report(scores: dict[str, Score]) -> str:
    rows = [f"{'type':<15}{'gold':>6}{'tp':>6}{'fp':>6}{'fn':>6}{'precision':>11}{'recall':>8}"]
    for t, s in scores.items():
        rows.append(
            f"{t:<15}{s.tp + s.fn:>6}{s.tp:>6}{s.fp:>6}{s.fn:>6}"
            f"{s.precision:>11.3f}{s.recall:>8.3f}"
        )
    return "\n".join(rows)
