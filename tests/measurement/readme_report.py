"""Makes the README's report screenshot from a real run on ../shared/data (not a test).

Usage: .venv/bin/python -m tests.measurement.readme_report [--eval results.json]
       [--out-dir DIR] [--png docs/img/report.png]

Starts the embedded server in-process under a two-subsidiary policy, ingests Ministère du
travail documents for each subsidiary, asks French questions through the real Answer/Search
RPCs, has a reviewer decide the held answers, and submits one feedback per answer. The feedback
is a *simulated user*: useful (rating 5, used as is) when the first citation is the document
the question is about, rating 4 (edited) when it is cited further down, rating 2 (discarded)
otherwise; minutes saved are set per use case when useful. Then ``docfactory report`` runs
over the real audit log and feedback table, and headless Chromium takes the screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import grpc
import yaml

from docfactory.app import start_server
from docfactory.cli import main as cli_main
from docfactory.core.config import load_settings
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from docfactory.measurement.v1 import measurement_service_pb2 as pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as pb_grpc
from tests.conftest import ROOT, SHARED
from tests.helpers import answer, md, search, upload

DOCS = [
    "docx/demande_rdv_rupture_conventionnelle.docx",
    "docx/certificat_de_travail.docx",
    "docx/reclamation_des_heures_sup.docx",
    "docx/rupture_periode_d-essai_salarie.docx",
    "docx/signalement_harcelement_sexuel.docx",
    "docx/recu_pour_solde_de_tout_compte.docx",
    "docx/reclamation_de_cp.docx",
    "pdf/reunion-cse-visio.pdf",
    "pdf/reunion-cse-telephone.pdf",
    "pdf/visite-medicale-synthese-1.pdf",
]
# (key, use case, question, file the question is about)
QUESTIONS = [
    (
        "k-paris-1",
        "rh-courriers",
        "Comment demander un rendez-vous pour une rupture conventionnelle ?",
        "demande_rdv_rupture_conventionnelle",
    ),
    (
        "k-paris-2",
        "rh-courriers",
        "Que doit contenir un certificat de travail ?",
        "certificat_de_travail",
    ),
    (
        "k-paris-1",
        "rh-courriers",
        "Comment réclamer le paiement de mes heures supplémentaires ?",
        "reclamation_des_heures_sup",
    ),
    (
        "k-paris-3",
        "rh-courriers",
        "Comment un salarié met-il fin à sa période d'essai ?",
        "rupture_periode_d-essai_salarie",
    ),
    (
        "k-paris-2",
        "rh-courriers",
        "Comment signaler un harcèlement sexuel à l'employeur ?",
        "signalement_harcelement_sexuel",
    ),
    (
        "k-lyon-1",
        "rh-courriers",
        "Que contient le reçu pour solde de tout compte ?",
        "recu_pour_solde_de_tout_compte",
    ),
    (
        "k-lyon-2",
        "rh-courriers",
        "Comment réclamer mes congés payés non pris ?",
        "reclamation_de_cp",
    ),
    (
        "k-lyon-1",
        "rh-courriers",
        "Comment demander un rendez-vous de rupture conventionnelle ?",
        "demande_rdv_rupture_conventionnelle",
    ),
    (
        "k-paris-3",
        "cse-conseil",
        "Peut-on réunir le CSE par visioconférence ?",
        "reunion-cse-visio",
    ),
    (
        "k-paris-1",
        "cse-conseil",
        "Le CSE peut-il se réunir par conférence téléphonique ?",
        "reunion-cse-telephone",
    ),
    (
        "k-paris-2",
        "cse-conseil",
        "Quand la visite médicale d'embauche est-elle obligatoire ?",
        "visite-medicale-synthese",
    ),
    (
        "k-lyon-2",
        "rh-courriers",
        "Qui délivre le certificat de travail au salarié ?",
        "certificat_de_travail",
    ),
]
MINUTES = {"rh-courriers": 20.0, "cse-conseil": 15.0}
KEYS = {
    "k-paris-1": "paris",
    "k-paris-2": "paris",
    "k-paris-3": "paris",
    "k-lyon-1": "lyon",
    "k-lyon-2": "lyon",
    "rev-paris": "paris",
}


def write_policy(path: Path) -> Path:
    keys = [
        {
            "id": k.replace("k-", "user-").replace("rev-", "relecteur-"),
            "tenant": t,
            "sha256": hashlib.sha256(k.encode()).hexdigest(),
            "roles": ["reviewer"] if k.startswith("rev-") else [],
        }
        for k, t in KEYS.items()
    ]
    common = {
        "allowed_collections": "*",
        "max_classification": "CONFIDENTIAL",
        "allowed_models": "*",
        "retention": "30d",
    }
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "tenants": [
                    {"id": "paris", "name": "Filiale Paris"},
                    {"id": "lyon", "name": "Filiale Lyon"},
                ],
                "api_keys": keys,
                "use_cases": [
                    {
                        **common,
                        "id": "rh-courriers",
                        "tenants": ["paris", "lyon"],
                        "owner": "DRH",
                        "purpose": "courriers RH",
                        "human_review": "optional",
                    },
                    {
                        **common,
                        "id": "cse-conseil",
                        "tenants": ["paris"],
                        "owner": "Juridique",
                        "purpose": "questions CSE",
                        "human_review": "required",
                    },
                ],
            },
            sort_keys=False,
        )
    )
    return path


async def run(data_dir: Path) -> None:
    settings = load_settings(
        env={},
        overrides={
            "data_dir": str(data_dir),
            "policy_file": str(write_policy(data_dir / "policy.yaml")),
            "server": {"host": "127.0.0.1", "port": 0},
        },
    )
    server = await start_server(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(server.address) as ch:
            for key in ("k-paris-1", "k-lyon-1"):
                for rel in DOCS:
                    await upload(ch, SHARED / "travail-docs" / rel, key=key)
            print(f"ingested {len(DOCS)} documents for each subsidiary")
            stub = pb_grpc.MeasurementServiceStub(ch)
            gov = gov_grpc.GovernanceServiceStub(ch)
            for key, uc, question, expected in QUESTIONS:
                await search(ch, question, key=key, use_case=uc)
                _, cits, summary = await answer(ch, question, key=key, use_case=uc)
                if summary.review_id:
                    await gov.DecideReview(
                        gov_pb.DecideReviewRequest(
                            review_id=summary.review_id,
                            decision=gov_pb.REVIEW_DECISION_APPROVE,
                        ),
                        metadata=md("rev-paris"),
                    )
                names = [c.document_name for c in cits]
                if summary.review_id:  # held answers carry no citations until released
                    released = await gov.GetReviewedAnswer(
                        gov_pb.GetReviewedAnswerRequest(review_id=summary.review_id),
                        metadata=md(key),
                    )
                    names = [c.document_name for c in released.citations]
                first = bool(names) and expected in names[0]
                cited = any(expected in n for n in names)
                rating = 5 if first else 4 if cited else 2
                await stub.SubmitFeedback(
                    pb.SubmitFeedbackRequest(
                        review_id=summary.review_id,
                        verdict=pb.VERDICT_USEFUL if cited else pb.VERDICT_NOT_USEFUL,
                        rating=rating,
                        time_saved_minutes=MINUTES[uc] if cited else 0.0,
                        usage=pb.ANSWER_USAGE_USED_AS_IS
                        if first
                        else pb.ANSWER_USAGE_EDITED
                        if cited
                        else pb.ANSWER_USAGE_DISCARDED,
                    ),
                    metadata=md(key),
                )
                print(f"{rating}/5  {question}  -> {names[:2]}")
            # a use case Lyon is not allowed to declare: refused and audited
            try:
                await answer(
                    ch,
                    "Peut-on réunir le CSE par téléphone ?",
                    key="k-lyon-1",
                    use_case="cse-conseil",
                )
            except grpc.aio.AioRpcError as exc:
                print(f"refused as expected: {exc.code().name}")
    finally:
        await server.stop(0.5)


def screenshot(html: Path, png: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium not found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "raw.png"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={raw}",
                "--window-size=1280,2300",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        img = Image.open(raw).convert("RGB")
    img = img.resize((1024, img.height * 1024 // img.width), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(buf.getvalue())
    print(f"{png}: {len(buf.getvalue()) // 1024} KB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--eval", help="docfactory eval JSON results")
    p.add_argument("--out-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="df-report-")))
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "report.png")
    ns = p.parse_args()
    data = ns.out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(data))
    today = dt.datetime.now(dt.UTC).date()
    os.environ["DOCFACTORY_DATABASE_URL"] = f"sqlite:///{data / 'docfactory.db'}"
    args: list[str] = [
        "report",
        "--from",
        (today - dt.timedelta(days=6)).isoformat(),
        "--to",
        today.isoformat(),
        "--out",
        str(ns.out_dir / "report.html"),
        "--json",
        str(ns.out_dir / "report.json"),
    ]
    if ns.eval:
        args += ["--eval", ns.eval]
    if cli_main(args) != 0:
        raise SystemExit("report failed")
    screenshot(ns.out_dir / "report.html", ns.png)
    print(f"report: {ns.out_dir / 'report.html'}")


if __name__ == "__main__":
    main()
