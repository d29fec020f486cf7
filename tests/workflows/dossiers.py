"""Synthetic dossiers for the workflow tests (values invented; identifiers with valid check
digits), written as Markdown/DOCX files into a temp folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def luhn_complete(prefix: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(prefix + "0")):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def iban_fr(bban: str) -> str:
    rearranged = bban + "FR00"
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return f"FR{98 - int(digits) % 97:02d}{bban}"


SIREN = luhn_complete("73282932")
OTHER_SIREN = luhn_complete("55210055")
SIRET = luhn_complete(SIREN + "0001")
IBAN = iban_fr("30004000031234567890143")
OTHER_IBAN = iban_fr("30004000031234567890144")


def _spaced(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def _fr_date(d: dt.date) -> str:
    return d.strftime("%d/%m/%Y")


def financement(
    folder: Path,
    *,
    amount: str = "120 000,00 €",
    kbis_siren: str = SIREN,
    rib_iban: str = IBAN,
    with_rib: bool = True,
    today: dt.date | None = None,
) -> list[Path]:
    """A financing application: letter, Kbis, RIB, budget table, financial statements."""
    today = today or dt.date.today()
    folder.mkdir(parents=True, exist_ok=True)
    docs = {
        "demande.md": f"""# Demande de financement

Société Atelier Dupont SAS

Objet : demande de financement d'une ligne de production

Madame, Monsieur,

Nous sollicitons un prêt pour financer notre nouvelle ligne de production.

SIREN : {SIREN}

Montant demandé : {amount}

IBAN du compte à créditer : {_spaced(IBAN)}

Date de la demande : {_fr_date(today)}

Courriel du contact : finance@atelier-dupont.fr

Téléphone du contact : 01 23 45 67 89
""",
        "kbis.md": f"""# Extrait Kbis

Greffe du tribunal de commerce de Lyon — Registre du commerce et des sociétés

Dénomination : Atelier Dupont SAS

SIREN : {kbis_siren}

SIRET du siège : {SIRET}

Date de l'extrait : {_fr_date(today - dt.timedelta(days=20))}
""",
        "rib.md": f"""# Relevé d'identité bancaire

Titulaire du compte : Atelier Dupont SAS

IBAN : {_spaced(rib_iban)}

BIC : BNPAFRPPXXX

Domiciliation : Agence Lyon Part-Dieu
""",
        "budget.md": """# Budget prévisionnel du projet

Plan de financement — coût du projet

| Poste de dépense | Montant |
|---|---|
| Matériel | 80 000,00 € |
| Travaux | 30 000,00 € |
| Autres dépenses | 10 000,00 € |
| Total du projet | 120 000,00 € |
""",
        "etats.md": f"""# Bilan et compte de résultat

Exercice clos le {_fr_date(today - dt.timedelta(days=120))}

SIREN : {SIREN}

Chiffre d'affaires : 2 450 000,00 €

Résultat net : 185 000,00 €

Capitaux propres : 640 000,00 €

Date de clôture de l'exercice : {_fr_date(today - dt.timedelta(days=120))}
""",
    }
    if not with_rib:
        docs.pop("rib.md")
    out = []
    for name, text in docs.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out
