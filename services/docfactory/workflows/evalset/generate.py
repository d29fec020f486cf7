"""Builds the dossier evaluation set (synthetic values in real public templates).

Everything written here is generated: company names, identifiers, amounts and dates are
**synthetic values** drawn from a seeded random generator (identifiers carry correct check
digits unless an inconsistency is planted). Two kinds of dossiers:

- ``financement``: an application letter, a Kbis-like company extract, bank details (RIB), a
  budget table and financial statements, generated as PDF (reportlab) or DOCX (python-docx);
- ``fin-de-contrat``: the real Ministère du travail DOCX templates of
  ``../shared/data/travail-docs/docx`` (rupture d'un commun accord du CDD, certificat de travail,
  reçu pour solde de tout compte) with their « placeholders » filled in.

Some PDF documents are "scanned": each page is rendered to an image (pdftoppm), slightly
rotated and noised, and written back as an image-only PDF, so parsing goes through OCR.
Inconsistencies (different SIREN, bad IBAN/SIREN/NIR check digits, sums that do not match,
expired documents, amounts over a ceiling) and missing documents are planted and labelled with
the rule ids of ``spec.yaml`` they must make fail.

``build(out_dir)`` writes the files and ``manifest.json`` (labels) under ``out_dir``; the
templates are copied from ``../shared/data`` into that folder only, never into the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from docfactory.workflows.extract.french import (
    iban_complete,
    luhn_complete,
    nir_key,
)

AS_OF = dt.date(2025, 6, 30)
MONTHS_FR = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]
CITIES = [
    "Paris",
    "Lyon",
    "Marseille",
    "Toulouse",
    "Nantes",
    "Lille",
    "Bordeaux",
    "Rennes",
    "Strasbourg",
    "Montpellier",
    "Dijon",
    "Grenoble",
]
NAMES = [
    "Boulangerie Moreau",
    "Atelier Lefebvre",
    "Menuiserie Garnier",
    "Transports Roux",
    "Imprimerie Fournier",
    "Clinique vétérinaire Blanc",
    "Brasserie Girard",
    "Optique Mercier",
    "Serrurerie Bonnet",
    "Librairie Dupuis",
    "Garage Lambert",
    "Pépinières Fontaine",
    "Laboratoire Chevalier",
    "Bureau d'études Robin",
    "Fromagerie Masson",
    "Cave Gauthier",
]
FORMS = ["SAS", "SARL", "SA", "EURL", "SASU"]
PEOPLE = [
    ("Claire", "Martin"),
    ("Julien", "Bernard"),
    ("Sophie", "Petit"),
    ("Karim", "Haddad"),
    ("Nathalie", "Durand"),
    ("Thomas", "Leroy"),
    ("Amina", "Diallo"),
    ("Pierre", "Morel"),
    ("Léa", "Simon"),
    ("Hugo", "Laurent"),
    ("Inès", "Michel"),
    ("Louis", "Garcia"),
]
BANKS = [
    ("30004", "BNPAFRPP"),
    ("30006", "AGRIFRPP"),
    ("30003", "SOGEFRPP"),
    ("10278", "CMCIFR2A"),
    ("20041", "PSSTFRPP"),
    ("30002", "CRLYFRPP"),
]
OBJECTS = [
    "l'acquisition d'un four professionnel",
    "la rénovation de l'atelier",
    "l'achat d'un véhicule utilitaire",
    "l'agrandissement des locaux",
    "la modernisation de la chaîne de production",
    "l'ouverture d'un second point de vente",
]
FUNCTIONS = ["Gérant", "Président", "Directrice générale", "Directeur administratif et financier"]
JOBS = [
    "Vendeur",
    "Comptable",
    "Technicienne de maintenance",
    "Assistant de direction",
    "Cuisinière",
    "Magasinier",
]


# -- synthetic values ---------------------------------------------------------------------------


def new_siren(rng: random.Random) -> str:
    return luhn_complete(str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(7)))


def bad_luhn(rng: random.Random, valid: str) -> str:
    last = int(valid[-1])
    return valid[:-1] + str((last + rng.randint(1, 9)) % 10)


def new_siret(rng: random.Random, siren: str) -> str:
    return luhn_complete(siren + f"{rng.randint(1, 99):04d}")


def new_iban(rng: random.Random, bank: str) -> str:
    guichet = f"{rng.randint(0, 99999):05d}"
    account = "".join(str(rng.randint(0, 9)) for _ in range(11))
    key = 97 - (89 * int(bank) + 15 * int(guichet) + 3 * int(account)) % 97
    return iban_complete("FR", f"{bank}{guichet}{account}{key:02d}")


def bad_iban(iban: str) -> str:
    check = int(iban[2:4])
    return iban[:2] + f"{(check + 11) % 100:02d}" + iban[4:]


def new_nir(rng: random.Random, *, corsica: bool = False) -> str:
    sex = str(rng.randint(1, 2))
    yy = f"{rng.randint(60, 99):02d}"
    mm = f"{rng.randint(1, 12):02d}"
    dept = (
        rng.choice(["2A", "2B"])
        if corsica
        else f"{rng.choice([13, 31, 44, 59, 69, 75, 92, 93]):02d}"
    )
    body = sex + yy + mm + dept + f"{rng.randint(1, 999):03d}" + f"{rng.randint(1, 999):03d}"
    return body + f"{nir_key(body):02d}"


def _random_date(rng: random.Random, first_year: int, last_year: int) -> dt.date:
    return dt.date(rng.randint(first_year, last_year), rng.randint(1, 12), rng.randint(1, 28))


def fmt_group(digits: str, sizes: Sequence[int]) -> str:
    out, i = [], 0
    for s in sizes:
        out.append(digits[i : i + s])
        i += s
    if i < len(digits):
        out.append(digits[i:])
    return " ".join(p for p in out if p)


def fmt_siren(rng: random.Random, siren: str) -> str:
    return rng.choice([fmt_group(siren, [3, 3, 3]), siren])


def fmt_siret(rng: random.Random, siret: str) -> str:
    return rng.choice([fmt_group(siret, [3, 3, 3, 5]), siret])


def fmt_iban(rng: random.Random, iban: str) -> str:
    return rng.choice([fmt_group(iban, [4] * 7), iban])


def fmt_nir(nir: str) -> str:
    return fmt_group(nir, [1, 2, 2, 2, 3, 3, 2])


def _thousands(n: int, sep: str) -> str:
    s = f"{n:,}".replace(",", sep)
    return s


def fmt_amount(
    rng: random.Random, value: Decimal, *, docx: bool = False, bare: bool = False
) -> str:
    """A French rendering of ``value`` (euros). Styles: ``45 000,00 €``, ``45 000 €``,
    ``45.000 EUR``, ``45 000 euros``, ``1,2 M€`` (only when exact)."""
    sp = "\u00a0" if docx and rng.random() < 0.5 else " "
    units = int(value)
    cents = int((value - units) * 100)
    if bare:
        return _thousands(units, sp) + (f",{cents:02d}" if cents else "")
    styles = ["comma", "euro", "eur_dot", "euros"]
    if cents == 0 and units >= 1_000_000 and units % 10_000 == 0:
        styles.append("meur")
    style = rng.choice(styles)
    if style == "comma" or cents:
        return f"{_thousands(units, sp)},{cents:02d} €"
    if style == "euro":
        return f"{_thousands(units, sp)} €"
    if style == "eur_dot":
        return f"{_thousands(units, '.')} EUR"
    if style == "euros":
        return f"{_thousands(units, sp)} euros"
    m = Decimal(units) / Decimal(1_000_000)
    return f"{str(m.normalize()).replace('.', ',')} M€"


def fmt_date(rng: random.Random, d: dt.date, *, numeric_ok: bool = True) -> str:
    day = "1er" if d.day == 1 else str(d.day)
    styles = ["long", "long"] + (["slash"] if numeric_ok else [])
    if rng.choice(styles) == "slash":
        return d.strftime("%d/%m/%Y")
    return f"{day} {MONTHS_FR[d.month - 1]} {d.year}"


def fmt_phone(rng: random.Random, digits9: str) -> str:
    if rng.random() < 0.3:
        return "+33 " + digits9[0] + " " + fmt_group(digits9[1:], [2, 2, 2, 2])
    return "0" + digits9[0] + " " + fmt_group(digits9[1:], [2, 2, 2, 2])


def money(rng: random.Random, lo: int, hi: int, step: int = 500) -> Decimal:
    return Decimal(rng.randrange(lo, hi, step))


# -- renderers ----------------------------------------------------------------------------------


def write_pdf(path: Path, lines: Sequence[str], title: str = "") -> None:
    """One or more A4 pages of text lines (reportlab, Helvetica)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=True)
    c.setTitle(title)
    y = 800.0
    for line in lines:
        if y < 60:
            c.showPage()
            y = 800.0
        if line.startswith("# "):
            c.setFont("Helvetica-Bold", 13)
            c.drawString(60, y, line[2:])
            y -= 24
            continue
        c.setFont("Helvetica", 10.5)
        if line:
            c.drawString(60, y, line)
        y -= 17 if line else 10
    c.save()


def write_docx(path: Path, lines: Sequence[str], table: Sequence[Sequence[str]] = ()) -> None:
    import docx

    d = docx.Document()
    for line in lines:
        if line == "<TABLE>" and table:
            t = d.add_table(rows=len(table), cols=len(table[0]))
            for i, row in enumerate(table):
                for j, cell in enumerate(row):
                    t.cell(i, j).text = cell
        elif line.startswith("# "):
            d.add_heading(line[2:], level=1)
        elif line:
            d.add_paragraph(line)
    d.save(str(path))


def scan_pdf(src: Path, dst: Path, rng: random.Random) -> None:
    """Render each page to an image, rotate slightly, add noise, save as an image-only PDF."""
    from PIL import Image, ImageFilter

    dpi = rng.choice([150, 100, 80])  # some low-resolution (fax-like) scans
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["pdftoppm", "-r", str(dpi), "-gray", "-png", str(src), str(Path(tmp) / "p")],
            check=True,
            capture_output=True,
        )
        images = []
        for png in sorted(Path(tmp).glob("p*.png")):
            im = Image.open(png).convert("L")
            im = im.rotate(rng.uniform(-1.2, 1.2), expand=False, fillcolor=255)
            noise = Image.effect_noise(im.size, rng.uniform(18, 40))
            im = Image.blend(im, noise, rng.uniform(0.1, 0.2)).filter(ImageFilter.SMOOTH)
            images.append(im.convert("RGB"))
        images[0].save(dst, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])


# -- dossiers -----------------------------------------------------------------------------------


@dataclass
class Doc:
    type: str
    file: str
    format: str
    scanned: bool
    fields: dict[str, str | None]


@dataclass
class Dossier:
    id: str
    flow: str
    documents: list[Doc] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)
    expected_failures: list[str] = field(default_factory=list)


FIN_PLANTS: dict[str, list[str]] = {
    "siren_mismatch": ["siren-demande-kbis"],
    "iban_bad_check": ["iban-rib-valide", "iban-demande-rib"],
    "budget_sum": ["budget-total"],
    "kbis_expired": ["kbis-moins-de-3-mois"],
    "accounts_old": ["comptes-recents"],
    "over_ceiling": ["plafond"],
    "amount_vs_budget": ["montant-sous-total-projet"],
    "siren_bad_check": ["siren-kbis-valide", "siren-demande-kbis", "siren-etats-financiers"],
    "missing_rib": ["pieces-requises"],
    "missing_budget": ["pieces-requises"],
}
CDD_PLANTS: dict[str, list[str]] = {
    "date_sortie_mismatch": ["date-sortie-coherente"],
    "solde_sum": ["solde-total"],
    "solde_over": ["solde-plafond"],
    "siret_mismatch": ["siret-coherent"],
    "nir_bad_key": ["nir-valide"],
    "missing_solde": ["pieces-requises"],
}


def _fin_plan(i: int) -> list[str]:
    keys = list(FIN_PLANTS)
    if i % 4 == 0:
        return []  # clean dossier
    plan = [keys[i % len(keys)]]
    if i % 5 == 3:
        extra = keys[(i * 7 + 3) % len(keys)]
        if extra not in plan and not (
            extra.startswith("missing") and plan[0].startswith("missing")
        ):
            plan.append(extra)
    return plan


def build_financement(out: Path, i: int, rng: random.Random, scanned: str | None) -> Dossier:
    plan = _fin_plan(i)
    d = Dossier(f"fin-{i:03d}", "financement", planted=plan)
    name = f"{rng.choice(NAMES)} {rng.choice(FORMS)}"
    city = rng.choice(CITIES)
    siren = new_siren(rng)
    siret = new_siret(rng, siren)
    bank, bic = rng.choice(BANKS)
    iban = new_iban(rng, bank)
    first, last = rng.choice(PEOPLE)
    domain = "".join(c for c in name.split()[-2].lower().replace("é", "e") if c.isalnum())
    email = f"{first.lower().replace('é', 'e').replace('è', 'e')}.{last.lower()}@{domain}.fr"
    phone9 = str(rng.choice([1, 4, 5, 6, 7, 9])) + "".join(str(rng.randint(0, 9)) for _ in range(8))
    materiel = money(rng, 5_000, 150_000)
    travaux = money(rng, 2_000, 120_000)
    autres = money(rng, 500, 20_000, 250) if rng.random() < 0.8 else None
    if "over_ceiling" in plan:
        materiel = money(rng, 400_000, 600_000, 1000)
        travaux = money(rng, 100_000, 200_000, 1000)
    total = materiel + travaux + (autres or 0)
    montant = total
    date_demande = AS_OF - dt.timedelta(days=rng.randint(1, 20))
    date_extrait = AS_OF - dt.timedelta(days=rng.randint(5, 80))
    if "kbis_expired" in plan:
        date_extrait = AS_OF - dt.timedelta(days=rng.randint(120, 300))
    date_cloture = dt.date(2024, 12, 31) if rng.random() < 0.7 else dt.date(2024, 9, 30)
    if "accounts_old" in plan:
        date_cloture = dt.date(2022, 12, 31)
    ca = Decimal(rng.randrange(300_000, 9_000_000, 10_000))
    rn = Decimal(rng.randrange(-50_000, 400_000, 100)) + Decimal(rng.randint(0, 99)) / 100
    cp = Decimal(rng.randrange(50_000, 2_000_000, 1000))

    demande_siren, kbis_siren, rib_iban = siren, siren, iban
    if "siren_mismatch" in plan:
        demande_siren = new_siren(rng)
    if "siren_bad_check" in plan:
        kbis_siren = bad_luhn(rng, siren)
    if "iban_bad_check" in plan:
        rib_iban = bad_iban(iban)
    budget_materiel = materiel
    if "budget_sum" in plan:
        budget_materiel = materiel + Decimal(rng.choice([1000, 2500, 150]))
    if "amount_vs_budget" in plan:
        montant = total - Decimal(rng.choice([5000, 10000, 2500]))
    if "missing_rib" in plan:
        d.missing.append("rib")
    if "missing_budget" in plan:
        d.missing.append("budget")

    folder = out / d.id
    folder.mkdir(parents=True, exist_ok=True)
    obj = rng.choice(OBJECTS)
    fmt = "docx" if i % 2 else "pdf"

    # demande (application letter)
    m_txt = fmt_amount(rng, montant, docx=fmt == "docx")
    siren_label = rng.choice(["SIREN", "N° SIREN", "Numéro SIREN"])
    lines = [
        name,
        f"{rng.randint(1, 120)} rue de la République",
        f"{rng.randint(10, 95)}000 {city}",
        f"{siren_label} : {fmt_siren(rng, demande_siren)}",
        f"Courriel : {email}",
        f"Téléphone : {fmt_phone(rng, phone9)}",
        "",
        "À l'attention du service Financement des entreprises",
        "",
        f"Objet : demande de financement pour {obj}",
        "",
        "Madame, Monsieur,",
        "",
        f"Nous sollicitons un prêt d'un montant de {m_txt} destiné à financer {obj}.",
        # distractor (every 5th letter): another amount next to the words "montant demandé"
        *(
            [
                "Le montant demandé tient compte d'une subvention régionale de "
                f"{fmt_amount(rng, money(rng, 5_000, 40_000))} déjà obtenue."
            ]
            if i % 5 == 1
            else []
        ),
        # every 7th letter gives the amount only in the sentence above
        *([f"Montant demandé : {m_txt}"] if i % 7 else []),
        f"Le financement sera versé sur notre compte IBAN {fmt_iban(rng, iban)}.",
        "Vous trouverez ci-joints les pièces justificatives de notre dossier.",
        "",
        "Nous vous prions d'agréer, Madame, Monsieur, nos salutations distinguées.",
        "",
        f"Fait à {city}, le {fmt_date(rng, date_demande)}",
        f"{first} {last}, {rng.choice(FUNCTIONS)}",
    ]
    demande_fields: dict[str, str | None] = {
        "raison_sociale": None,
        "siren": demande_siren,
        "montant_demande": f"{montant:.2f}",
        "iban": iban,
        "date_demande": date_demande.isoformat(),
        "email": email,
        "telephone": "+33" + phone9,
    }
    _emit(d, folder, "demande", fmt, lines, demande_fields, rng, scanned)

    # kbis (company extract)
    lines = [
        f"# GREFFE DU TRIBUNAL DE COMMERCE DE {city.upper()}",
        "Extrait Kbis",
        "EXTRAIT D'IMMATRICULATION PRINCIPALE AU REGISTRE DU COMMERCE ET DES SOCIÉTÉS",
        f"à jour au {fmt_date(rng, date_extrait)}",
        "",
        "IDENTIFICATION DE LA PERSONNE MORALE",
        f"Immatriculation au RCS, numéro : {fmt_siren(rng, kbis_siren)} R.C.S. {city}",
        f"Date d'immatriculation : {fmt_date(rng, _random_date(rng, 1995, 2020))}",
        f"Dénomination ou raison sociale : {name}",
        f"Forme juridique : {name.split()[-1]}",
        f"Capital social : {fmt_amount(rng, Decimal(rng.choice([1000, 10000, 50000, 100000])))}",
        f"Adresse du siège : {rng.randint(1, 120)} avenue Jean Jaurès "
        f"{rng.randint(10, 95)}000 {city}",
        "",
        "RENSEIGNEMENTS RELATIFS À L'ACTIVITÉ ET À L'ÉTABLISSEMENT PRINCIPAL",
        f"SIRET du siège : {fmt_siret(rng, siret)}",
        "Activité(s) exercée(s) : commerce et services aux entreprises",
        "",
        "Le Greffier",
    ]
    kbis_siret = siret
    kbis_fields: dict[str, str | None] = {
        "raison_sociale": name,
        "siren": kbis_siren,
        "siret": kbis_siret,
        "date_extrait": date_extrait.isoformat(),
    }
    _emit(d, folder, "kbis", "pdf", lines, kbis_fields, rng, scanned)

    # rib
    if "rib" not in d.missing:
        lines = [
            "# RELEVÉ D'IDENTITÉ BANCAIRE",
            f"Titulaire du compte : {name}",
            f"Domiciliation : Agence {city} Centre",
            "",
            "Code banque  Code guichet  Numéro de compte  Clé RIB",
            f"{iban[4:9]}  {iban[9:14]}  {iban[14:25]}  {iban[25:27]}",
            "",
            f"IBAN : {fmt_iban(rng, rib_iban)}",
            f"BIC : {bic}",
        ]
        rib_fields: dict[str, str | None] = {"titulaire": name, "iban": rib_iban}
        _emit(d, folder, "rib", "pdf" if i % 3 else "docx", lines, rib_fields, rng, scanned)

    # budget
    if "budget" not in d.missing:
        bfmt = "docx" if i % 3 != 1 else "pdf"
        rows: list[tuple[str, str | Decimal]] = [
            ("Poste de dépense", "Montant HT"),
            ("Matériel", budget_materiel),
            ("Travaux", travaux),
        ]
        if autres is not None:
            rows.append(("Autres dépenses", autres))
        rows.append(("Total du projet", total))
        if bfmt == "docx":
            table = [
                [a, b if isinstance(b, str) else fmt_amount(rng, b, docx=True)] for a, b in rows
            ]
            lines = [
                f"# Budget prévisionnel du projet — {name}",
                f"Projet : {obj}",
                "<TABLE>",
                "Montants hors taxes.",
            ]
            path = folder / "budget.docx"
            write_docx(path, lines, table)
            d.documents.append(Doc("budget", path.name, "docx", False, {}))
        else:
            lines = [f"# Budget prévisionnel du projet — {name}", f"Projet : {obj}", ""]
            for a, b in rows[1:]:
                amount = b if isinstance(b, str) else fmt_amount(rng, b)
                lines.append(f"{a} ........................ {amount}")
            path = folder / "budget.pdf"
            write_pdf(path, lines)
            d.documents.append(Doc("budget", path.name, "pdf", False, {}))
        d.documents[-1].fields = {
            "poste_materiel": f"{budget_materiel:.2f}",
            "poste_travaux": f"{travaux:.2f}",
            "poste_autres": f"{autres:.2f}" if autres is not None else None,
            "total": f"{total:.2f}",
        }

    # etats financiers
    prev = [ca * Decimal("0.9"), rn * Decimal("0.8"), cp * Decimal("0.95")]
    lines = [
        f"# {name}",
        f"SIREN : {fmt_siren(rng, siren)}",
        "Comptes annuels — bilan et compte de résultat",
        f"Exercice clos le {fmt_date(rng, date_cloture)}",
        "",
        f"Chiffre d'affaires net : {fmt_amount(rng, ca)}",
        f"Résultat net : {fmt_amount(rng, rn) if rn >= 0 else '-' + fmt_amount(rng, -rn)}",
        f"Capitaux propres : {fmt_amount(rng, cp)}",
        "",
        "Rappel de l'exercice précédent",
        f"Chiffre d'affaires net : {fmt_amount(rng, prev[0].quantize(Decimal('1')))}",
        f"Résultat net : {fmt_amount(rng, abs(prev[1]).quantize(Decimal('0.01')))}",
        f"Capitaux propres : {fmt_amount(rng, prev[2].quantize(Decimal('1')))}",
    ]
    etats_fields: dict[str, str | None] = {
        "siren": siren,
        "chiffre_affaires": f"{ca:.2f}",
        "resultat_net": f"{rn:.2f}" if rn >= 0 else f"-{-rn:.2f}",
        "capitaux_propres": f"{cp:.2f}",
        "date_cloture": date_cloture.isoformat(),
    }
    if i % 4 == 3:
        # a DOCX table with the two years side by side (bare amounts, cells flattened by the
        # parser into one line: "Chiffre d'affaires net 1 234 567 1 111 110")
        def cell(v: Decimal) -> str:
            return ("-" if v < 0 else "") + fmt_amount(rng, abs(v), docx=True, bare=True)

        table = [
            ["En euros", "Exercice N", "Exercice N-1"],
            ["Chiffre d'affaires net", cell(ca), cell(prev[0].quantize(Decimal("1")))],
            ["Résultat net", cell(rn), cell(prev[1].quantize(Decimal("0.01")))],
            ["Capitaux propres", cell(cp), cell(prev[2].quantize(Decimal("1")))],
        ]
        head = lines[:5]
        path = folder / "etats_financiers.docx"
        write_docx(path, [*head, "<TABLE>"], table)
        d.documents.append(Doc("etats_financiers", path.name, "docx", False, etats_fields))
    else:
        _emit(d, folder, "etats_financiers", "pdf", lines, etats_fields, rng, scanned)
    for p in plan:
        for r in FIN_PLANTS[p]:
            if r not in d.expected_failures:
                d.expected_failures.append(r)
    return d


def _emit(
    d: Dossier,
    folder: Path,
    doc_type: str,
    fmt: str,
    lines: Sequence[str],
    fields: dict[str, str | None],
    rng: random.Random,
    scanned: str | None,
) -> None:
    if fmt == "docx":
        path = folder / f"{doc_type}.docx"
        write_docx(path, lines)
        d.documents.append(Doc(doc_type, path.name, "docx", False, fields))
        return
    path = folder / f"{doc_type}.pdf"
    write_pdf(path, lines)
    is_scan = scanned == doc_type
    if is_scan:
        raw = folder / f"{doc_type}.text.pdf"
        path.rename(raw)
        scan_pdf(raw, path, rng)
        raw.unlink()
    d.documents.append(Doc(doc_type, path.name, "pdf", is_scan, fields))


# -- fin de contrat on the Ministère du travail templates ---------------------------------------


def fill_docx(src: Path, dst: Path, fill: Callable[[str], str], header: Sequence[str] = ()) -> None:
    """Copy of the template with every paragraph's text passed through ``fill`` (runs merged:
    the templates split words across runs), optional letterhead paragraphs prepended."""
    import docx

    d = docx.Document(str(src))
    for p in d.paragraphs:
        old = p.text
        new = fill(old)
        if new != old and p.runs:
            p.runs[0].text = new
            for r in p.runs[1:]:
                r.text = ""
    body = d.paragraphs[0] if d.paragraphs else None
    for line in header:
        if body is not None:
            body.insert_paragraph_before(line)
        else:
            d.add_paragraph(line)
    d.save(str(dst))


def build_fin_de_contrat(out: Path, i: int, rng: random.Random, templates: Path) -> Dossier:
    keys = list(CDD_PLANTS)
    plan = [] if i % 3 == 0 else [keys[(i - i // 3 - 1) % len(keys)]]
    d = Dossier(f"cdd-{i:03d}", "fin-de-contrat", planted=plan)
    folder = out / d.id
    folder.mkdir(parents=True, exist_ok=True)
    company = f"{rng.choice(NAMES)} {rng.choice(FORMS)}"
    city = rng.choice(CITIES)
    siren = new_siren(rng)
    siret = new_siret(rng, siren)
    first, last = rng.choice(PEOPLE)
    rfirst, rlast = rng.choice([p for p in PEOPLE if p != (first, last)])
    civ = rng.choice(["Madame", "Monsieur"])
    nir = new_nir(rng, corsica=i % 4 == 1)
    if "nir_bad_key" in plan:
        nir = nir[:13] + f"{(int(nir[13:]) + 7) % 97 or 1:02d}"
    date_contrat = dt.date(2024, rng.randint(1, 12), rng.randint(1, 28))
    date_fin = AS_OF - dt.timedelta(days=rng.randint(5, 60))
    date_sortie = date_fin
    if "date_sortie_mismatch" in plan:
        date_sortie = date_fin + dt.timedelta(days=rng.choice([1, 7, 30]))
    date_recu = date_fin
    salaires = Decimal(rng.randrange(1_500, 9_000)) + Decimal(rng.randint(0, 99)) / 100
    primes = Decimal(rng.randrange(0, 3_000, 50))
    conges = Decimal(rng.randrange(200, 4_000)) + Decimal(rng.randint(0, 99)) / 100
    if "solde_over" in plan:
        salaires += Decimal(60_000)
    total = salaires + primes + conges
    total_printed = total + (Decimal(rng.choice([100, 250, 1000])) if "solde_sum" in plan else 0)
    solde_siret = new_siret(rng, new_siren(rng)) if "siret_mismatch" in plan else siret
    if "missing_solde" in plan:
        d.missing.append("solde")

    def head(s: str) -> list[str]:
        return [
            company,
            f"SIRET : {fmt_siret(rng, s)}",
            f"{rng.randint(1, 99)} boulevard Voltaire {city}",
        ]

    # rupture d'un commun accord du CDD
    fin_txt = fmt_date(rng, date_fin)
    contrat_txt = fmt_date(rng, date_contrat)

    def fill_rupture(t: str) -> str:
        t = t.replace("« Nom, Adresse, Code postal + Ville »", f"{company}, {city}")
        t = t.replace(
            "« Prénom Nom du représentant, Fonction (DRH, etc.) »", f"{rfirst} {rlast}, DRH"
        )
        t = t.replace(
            "« Madame / Monsieur Prénom Nom du salarié, Adresse, Code postal + Ville »",
            f"{civ} {first} {last}, {city}",
        )
        t = t.replace("ont conclu le « date »", f"ont conclu le {contrat_txt}")
        t = t.replace(
            "« date / événement (retour du salarié absent, etc.) »", "retour du salarié absent"
        )
        t = t.replace("prendra fin le « date »", f"prendra fin le {fin_txt}")
        t = t.replace(
            "Fait à « Ville », le « date »", f"Fait à {city}, le {fmt_date(rng, date_fin)}"
        )
        return t.replace("« le salarié / la salariée »", "le salarié").replace(
            "« au salarié / à la salariée »", "au salarié"
        )

    src = templates / "rupture_commun_accord_du_cdd.docx"
    fill_docx(src, folder / "rupture.docx", _nbsp_fold(fill_rupture))
    d.documents.append(
        Doc(
            "rupture",
            "rupture.docx",
            "docx",
            False,
            {"date_contrat": date_contrat.isoformat(), "date_fin": date_fin.isoformat()},
        )
    )

    # certificat de travail
    entree = date_contrat

    def fill_cert(t: str) -> str:
        t = t.replace("« Raison sociale de la société »", company)
        t = t.replace("« Madame / Monsieur « Prénom » « Nom »", f"{civ} {first} {last}")
        t = t.replace("« Adresse du salarié »", f"{rng.randint(1, 60)} rue Victor Hugo {city}")
        t = t.replace("« employée / employé »", "employé")
        t = t.replace(
            "« nature du contrat (CDI, CDD...) » du date d’entrée dans l’entreprise »",
            f"CDD du {fmt_date(rng, entree)}",
        )
        t = t.replace("« date de sortie de l’entreprise »", fmt_date(rng, date_sortie))
        t = t.replace("« fonction du salarié »", rng.choice(JOBS))
        t = t.replace("« Monsieur » / « Madame » « Nom et prénom »", f"{civ} {last} {first}")
        t = t.replace(
            "Fait à « Ville », le « date »", f"Fait à {city}, le {fmt_date(rng, date_sortie)}"
        )
        t = t.replace("« Prénom Nom du représentant »", f"{rfirst} {rlast}")
        return t.replace("« Fonction »", "DRH").replace("« Signature »", "")

    header = [
        *head(siret),
        f"Salarié : {civ} {first} {last} — N° de sécurité sociale : {fmt_nir(nir)}",
    ]
    fill_docx(
        templates / "certificat_de_travail.docx",
        folder / "certificat.docx",
        _nbsp_fold(fill_cert),
        header,
    )
    d.documents.append(
        Doc(
            "certificat",
            "certificat.docx",
            "docx",
            False,
            {
                "employeur": company,
                "siret": siret,
                "nir": nir,
                "date_entree": entree.isoformat(),
                "date_sortie": date_sortie.isoformat(),
            },
        )
    )

    # reçu pour solde de tout compte
    if "solde" not in d.missing:

        def fill_solde(t: str) -> str:
            t = t.replace("« Société »", company).replace(
                "« Prénom Nom du représentant »", f"{rfirst} {rlast}"
            )
            t = t.replace("« Fonction (DRH, etc.) »", "DRH").replace(
                "« Prénom Nom du salarié »", f"{first} {last}"
            )
            t = t.replace("« Adresse »", "3 place de la Mairie").replace(
                "« Code postal + Ville »", city
            )
            t = t.replace(
                "« Lettre recommandée avec accusé de réception n° 1A XXX XXX XXX X / "
                "Courrier remis en mains propres contre décharge » ",
                "Courrier remis en mains propres contre décharge",
            )
            t = t.replace("A « lieu », le « date »", f"À {city}, le {fmt_date(rng, date_recu)}")
            t = t.replace("« Madame / Monsieur »", civ).replace("« Madame / Monsieur »", civ)
            t = t.replace(
                "« Salaires : Montant en brut »",
                f"Salaires : {fmt_amount(rng, salaires, docx=True)}",
            )
            t = t.replace(
                "« Primes : Montant en brut »", f"Primes : {fmt_amount(rng, primes, docx=True)}"
            )
            t = t.replace(
                "« Congés payés : Montant en brut »",
                f"Congés payés : {fmt_amount(rng, conges, docx=True)}",
            )
            t = t.replace("« Etc. »", f"Total versé : {fmt_amount(rng, total_printed, docx=True)}")
            return (
                t.replace("« Nom »", company)
                .replace("« Fonction »", "DRH")
                .replace("« Signature »", "")
            )

        fill_docx(
            templates / "recu_pour_solde_de_tout_compte.docx",
            folder / "solde.docx",
            _nbsp_fold(fill_solde),
            head(solde_siret),
        )
        d.documents.append(
            Doc(
                "solde",
                "solde.docx",
                "docx",
                False,
                {
                    "siret": solde_siret,
                    "salaires": f"{salaires:.2f}",
                    "primes": f"{primes:.2f}",
                    "conges_payes": f"{conges:.2f}",
                    "total": f"{total_printed:.2f}",
                    "date_recu": date_recu.isoformat(),
                },
            )
        )
    for p in plan:
        d.expected_failures.extend(r for r in CDD_PLANTS[p] if r not in d.expected_failures)
    return d


def _nbsp_fold(fill: Callable[[str], str]) -> Callable[[str], str]:
    """The templates write « \u00a0placeholder\u00a0»: fill on a copy with plain spaces."""

    def run(text: str) -> str:
        plain = text.replace("\u00a0", " ")
        plain = " ".join(plain.split(" ")) if plain else plain
        out = fill(plain.replace("«  ", "« ").replace("  »", " »"))
        return out if out != plain.replace("«  ", "« ").replace("  »", " »") else text

    return run


# -- entry point --------------------------------------------------------------------------------


def build(
    out_dir: Path,
    *,
    financement: int = 24,
    fin_de_contrat: int = 10,
    seed: int = 13,
    templates: Path | None = None,
    scans: bool = True,
    reuse: bool = False,
) -> dict[str, Any]:
    """Write the evaluation set under ``out_dir`` and return its manifest (also written as
    ``manifest.json``). ``templates``: the Ministère du travail DOCX folder; without it the
    fin-de-contrat dossiers are skipped."""
    params = {
        "seed": seed,
        "financement": financement,
        "fin_de_contrat": fin_de_contrat if templates is not None else 0,
        "scans": scans,
    }
    existing = out_dir / "manifest.json"
    if reuse and existing.exists():
        old: dict[str, Any] = json.loads(existing.read_text())
        if old.get("params") == params:
            return old
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    dossiers: list[Dossier] = []
    scan_cycle = ["kbis", "rib", "etats_financiers"]
    for i in range(financement):
        scanned = scan_cycle[(i // 3) % 3] if scans and i % 3 == 2 else None
        dossiers.append(build_financement(out_dir, i, rng, scanned))
    if templates is not None and templates.is_dir() and fin_de_contrat:
        copy = out_dir / "_templates"
        copy.mkdir(exist_ok=True)
        for name in (
            "rupture_commun_accord_du_cdd.docx",
            "certificat_de_travail.docx",
            "recu_pour_solde_de_tout_compte.docx",
        ):
            shutil.copyfile(templates / name, copy / name)
        for i in range(fin_de_contrat):
            dossiers.append(build_fin_de_contrat(out_dir, i, rng, copy))
    manifest = {
        "note": "synthetic values in real public templates; see generate.py",
        "as_of": AS_OF.isoformat(),
        "params": params,
        "dossiers": [
            {
                "id": d.id,
                "flow": d.flow,
                "missing": d.missing,
                "planted": d.planted,
                "expected_failures": d.expected_failures,
                "documents": [
                    {
                        "type": x.type,
                        "file": f"{d.id}/{x.file}",
                        "format": x.format,
                        "scanned": x.scanned,
                        "fields": x.fields,
                    }
                    for x in d.documents
                ],
            }
            for d in dossiers
        ],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest
