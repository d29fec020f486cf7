"""French first, English too: one dict per language, picked by ``?lang=`` or Accept-Language."""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("fr", "en")
DEFAULT = "fr"

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "app": "Console docfactory",
        "skip": "Aller au contenu",
        "nav": "Navigation principale",
        "inbox": "À relire",
        "dossiers": "Dossiers",
        "documents": "Documents",
        "jobs": "Traitements",
        "usage": "Usage",
        "audit": "Audit",
        "signin": "Connexion",
        "signout": "Se déconnecter",
        "signed_in_as": "Connecté·e : {key} ({tenant})",
        "roles": "Rôles",
        "api_key": "Clé d'API",
        "api_key_help": "Votre clé personnelle ; elle reste côté serveur le temps de la session.",
        "signin_button": "Se connecter",
        "signin_failed": "Connexion refusée : {message}",
        "signin_required": "Connectez-vous pour continuer.",
        "signed_out": "Vous êtes déconnecté·e.",
        "no_policy": (
            "Aucune politique de gouvernance n'est configurée : toute clé a tous les rôles, "
            "comme sur l'API ; la relecture humaine demande une politique."
        ),
        "language": "Langue",
        "error": "Erreur",
        "forbidden_title": "Accès refusé (403)",
        "forbidden": "Votre rôle ne permet pas cette page ou cette action ({needed}).",
        "not_found_title": "Introuvable (404)",
        "not_found": "Cet élément n'existe pas ou n'est pas visible pour votre entité.",
        "unavailable_title": "Service indisponible",
        "unavailable": (
            "Le service docfactory ne répond pas ({address}). Réessayez dans un instant ; "
            "si cela persiste, prévenez l'exploitation."
        ),
        "internal_title": "Erreur inattendue",
        "internal": "Une erreur inattendue s'est produite ; elle a été journalisée.",
        "csrf_title": "Formulaire refusé",
        "csrf": (
            "Le jeton de sécurité du formulaire manque ou a expiré : rechargez la page "
            "et recommencez."
        ),
        "too_many_title": "Trop de tentatives (429)",
        "too_many": (
            "Trop de tentatives de connexion échouées depuis cette adresse ou avec cette clé : "
            "réessayez dans {minutes} minutes."
        ),
        "too_many_one": (
            "Trop de tentatives de connexion échouées depuis cette adresse ou avec cette clé : "
            "réessayez dans une minute."
        ),
        "origin_title": "Connexion refusée (403)",
        "origin": (
            "Cette demande de connexion vient d'un autre site ({origin}) : elle est refusée. "
            "Ouvrez la console directement à son adresse et connectez-vous depuis sa page."
        ),
        "bad_form_title": "Formulaire incomplet",
        "back": "Retour",
        "home": "Accueil",
        "welcome": "Bienvenue",
        "welcome_text": "Choisissez une rubrique ; seules celles de vos rôles sont proposées.",
        "inbox_title": "Réponses en attente de relecture",
        "inbox_empty": "Aucune réponse n'attend de relecture.",
        "review": "Relecture",
        "use_case": "Cas d'usage",
        "requester": "Demandeur",
        "created": "Créée le",
        "state": "État",
        "claimed_by": "Prise par",
        "claimed_by_you": "Prise par vous jusqu'à {until}",
        "claimed_by_other": "Prise par {key} jusqu'à {until} : un seul relecteur à la fois.",
        "not_claimed": "Libre",
        "open": "Ouvrir",
        "claim": "Prendre en charge",
        "claimed_ok": "Vous avez pris en charge cette réponse.",
        "draft": "Brouillon de réponse",
        "question": "Question",
        "cited_passages": "Passages cités",
        "page": "p. {page}",
        "no_citation": "Aucun passage cité.",
        "model": "Modèle",
        "decision": "Décision",
        "approve": "Approuver",
        "amend": "Modifier puis publier",
        "reject": "Rejeter",
        "comment": "Commentaire",
        "amended_text": "Texte modifié (pour « Modifier »)",
        "decide": "Enregistrer la décision",
        "decided_ok": "Décision enregistrée : {state}.",
        "four_eyes": (
            "Principe des quatre yeux : le demandeur ({key}) ne peut pas relire sa propre demande."
        ),
        "decided_by": "Décidée par {key}",
        "bad_decision": "Choisissez une décision : approuver, modifier ou rejeter.",
        "amend_needs_text": "« Modifier » demande le texte modifié.",
        "text_only_for_amend": "Le texte modifié ne vaut que pour « Modifier ».",
        "documents_title": "Documents",
        "search": "Rechercher",
        "query": "Recherche",
        "collection": "Collection",
        "all": "Toutes",
        "results": "Résultats",
        "no_result": "Aucun résultat.",
        "score": "Score",
        "filename": "Fichier",
        "classification": "Classification",
        "version": "Version",
        "chunks": "Passages",
        "pages": "Pages",
        "ocr_pages": "Pages lues par OCR",
        "ocr_confidence": "confiance",
        "ocr_low": "OCR peu fiable : texte à vérifier",
        "updated": "Mis à jour",
        "delete": "Supprimer",
        "delete_confirm": "Je confirme la suppression de ce document de l'index",
        "delete_needs_confirm": "Cochez la confirmation pour supprimer.",
        "deleted_ok": "Document supprimé ({chunks} passages retirés).",
        "no_document": "Aucun document.",
        "source": "Source",
        "next_page": "Page suivante",
        "query_required": "Saisissez une recherche.",
        "document": "Document",
        "jobs_title": "Traitements en masse",
        "no_job": "Aucun traitement.",
        "kind": "Type",
        "progress": "Avancement",
        "objects": "Objets",
        "indexed": "Indexés",
        "unchanged": "Inchangés",
        "failed": "En échec",
        "deleted": "Supprimés",
        "skipped": "Ignorés",
        "failures": "Échecs par objet",
        "no_failure": "Aucun échec.",
        "reason": "Motif",
        "message": "Message",
        "job_error": "Erreur du traitement",
        "live": "Mise à jour automatique toutes les 2 s.",
        "usage_title": "Usage par cas d'usage",
        "period": "Période",
        "from": "Du",
        "to": "Au",
        "apply": "Afficher",
        "no_usage": "Aucune activité sur la période.",
        "active_users": "Utilisateurs actifs",
        "questions": "Questions",
        "searches": "Recherches",
        "denied": "Refus",
        "feedback": "Retours",
        "useful_rate": "Utile",
        "time_saved": "Temps gagné (min)",
        "citation_rate": "Réponses citées",
        "refusal_rate": "Taux de refus",
        "approval_rate": "Approbation en relecture",
        "latency": "Latence p50 / p95 (ms)",
        "per_day": "Questions et recherches par jour",
        "bad_date": "Date invalide : utilisez AAAA-MM-JJ.",
        "audit_title": "Journal d'audit",
        "chain_ok": "Chaîne intacte : {n} enregistrements vérifiés.",
        "chain_broken": "Chaîne ALTÉRÉE : {n} enregistrements vérifiés, {p} problèmes.",
        "seq": "N°",
        "problem": "Problème",
        "verify": "Vérifier à nouveau",
        "export": "Exporter (JSONL)",
        "export_help": (
            "L'export contient les enregistrements de l'entité {tenant} ; la vérification de "
            "toute la chaîne se fait sur un export complet (docfactory audit export)."
        ),
        "dossiers_title": "Dossiers",
        "no_dossier": "Aucun dossier.",
        "steps": "Étapes",
        "fields": "Champs",
        "evidence": "Preuve",
        "checks": "Contrôles",
        "note": "Note",
        "value": "Valeur",
        "confidence": "Confiance",
        "flow": "Flux",
        "start_run": "Lancer un traitement",
        "pending_decisions": "Décisions attendues",
        "approvals": "Approbations : {n}/{m}",
        "first_approval": "Première approbation par {key} le {time}",
        "amended_ok": "Modification enregistrée.",
        "field_name": "Champ",
        "new_value": "Nouvelle valeur",
        "status": "Statut",
        "filter": "Filtrer",
        "run_started": "Traitement lancé : {run}.",
        "unsupported": "Cette rubrique n'est pas disponible sur ce serveur ({message}).",
        "signoff": "Signature",
        "no_worker": (
            "Aucun worker n'a pris ce dossier depuis {seconds} s et aucun n'est en marche : "
            "le traitement attend. Il démarrera dès qu'un worker sera lancé (docfactory serve "
            "en lance, sauf avec --dossier-workers 0 ; sinon docfactory dossier worker) : "
            "prévenez l'exploitation."
        ),
        "missing_documents": "Pièces manquantes : {names}.",
        "unknown_error": "Refus du service ({reason}) : {message}",
        "latest_state": "Dernier état",
        "latest_run": "Dernier traitement",
        "run": "Traitement",
        "flow_unknown": "Flux « {flow} » inconnu.",
        "flows_known": "Flux possibles : {flows}.",
        "severity": "Gravité",
        "summary": "Synthèse",
        # -- dossier workplace: new dossier, run summary, decisions (issue 25) --------------
        "new_dossier": "Nouveau dossier",
        "display_name": "Nom du dossier",
        "use_case_free": "Identifiant du cas d'usage (aucune liste n'est disponible ici).",
        "flow_help": "Le traitement à lancer sur ce dossier, par exemple « financement ».",
        "dossier_files": "Pièces du dossier",
        "drop_files": "Déposez les fichiers ici ou choisissez-les (plusieurs à la fois)",
        "files_help": "Jusqu'à {n} fichiers, {limit} au total.",
        "remove_file": "Retirer",
        "create_and_start": "Créer le dossier et lancer le traitement",
        "upload_sending": "Envoi des fichiers…",
        "upload_processing": "Fichiers reçus : lecture et enregistrement des pièces…",
        "upload_failed": "L'envoi a échoué (connexion interrompue) : réessayez.",
        "upload_too_large": (
            "Les fichiers dépassent la taille maximale d'un envoi ({limit} au total) : "
            "retirez-en ou découpez le dossier."
        ),
        "too_many_files": "Un dossier compte au plus {n} fichiers.",
        "created_started": "Dossier créé avec {n} pièces ; traitement lancé.",
        "created_not_started": "Dossier créé, mais le traitement n'a pas démarré : {problem}",
        "submitted_by": "Soumis par",
        "runs_of_dossier": "Traitements",
        "current_step": "Étape en cours",
        "party": "Emprunteur",
        "amount": "Montant",
        "blocking_checks": "Contrôles bloquants",
        "blocking_failed": "{n} non conforme(s)",
        "blocking_none": "aucun non conforme",
        "not_evaluated_n": "{n} non évalué(s)",
        "warnings_n": "{n} avertissement(s)",
        "approvals_label": "Approbations",
        "four_eyes_short": "quatre yeux",
        "four_eyes_help": (
            "{m} approbations de personnes différentes sont nécessaires (quatre yeux) ; "
            "la personne qui a soumis le dossier ne peut pas l'approuver."
        ),
        "amend_help": (
            "« Modifier puis publier » : saisissez les nouvelles valeurs dans la colonne « "
            "Nouvelle valeur » des champs ci-dessous ; la note est refaite puis approuvée."
        ),
        "show_evidence": "Voir la preuve",
        "sources": "Sources",
        "decisions": "Décisions",
        "awaiting_others": (
            "Le dossier attend la décision des valideurs ; le résultat s'affichera ici une "
            "fois signé."
        ),
        "amend_needs_values": "« Modifier puis publier » demande au moins une nouvelle valeur.",
        "values_only_for_amend": (
            "Les nouvelles valeurs ne valent que pour « Modifier puis publier »."
        ),
        "decided_signed": "Décision enregistrée : Approbation. Le dossier est signé et publié.",
        "amended_signed": "Modification enregistrée et approuvée : le dossier est signé et publié.",
        "decided_needs_more": (
            "Approbation enregistrée ({n}/{m}) : une autre personne doit encore approuver "
            "(quatre yeux)."
        ),
        "amended_needs_more": (
            "Modification enregistrée et approuvée ({n}/{m}) : une autre personne doit encore "
            "approuver la version corrigée (quatre yeux)."
        ),
        "decision_applying": "Le traitement l'applique ; rechargez la page dans un instant.",
        "amended_redrafting": (
            "La note est en cours de mise à jour : approuvez-la quand la nouvelle version "
            "s'affiche."
        ),
        "amended_not_approved": "Elle n'a pas été approuvée : {why}",
    },
    "en": {
        "app": "docfactory console",
        "skip": "Skip to content",
        "nav": "Main navigation",
        "inbox": "To review",
        "dossiers": "Dossiers",
        "documents": "Documents",
        "jobs": "Jobs",
        "usage": "Usage",
        "audit": "Audit",
        "signin": "Sign in",
        "signout": "Sign out",
        "signed_in_as": "Signed in: {key} ({tenant})",
        "roles": "Roles",
        "api_key": "API key",
        "api_key_help": "Your personal key; it stays on the server for the session.",
        "signin_button": "Sign in",
        "signin_failed": "Sign-in refused: {message}",
        "signin_required": "Sign in to continue.",
        "signed_out": "You are signed out.",
        "no_policy": (
            "No governance policy is configured: every key has every role, as on the API; "
            "human review needs a policy."
        ),
        "language": "Language",
        "error": "Error",
        "forbidden_title": "Access denied (403)",
        "forbidden": "Your role does not allow this page or action ({needed}).",
        "not_found_title": "Not found (404)",
        "not_found": "This item does not exist or is not visible to your tenant.",
        "unavailable_title": "Service unavailable",
        "unavailable": (
            "The docfactory service does not answer ({address}). Try again in a moment; "
            "if it lasts, tell the operations team."
        ),
        "internal_title": "Unexpected error",
        "internal": "An unexpected error occurred; it has been logged.",
        "csrf_title": "Form refused",
        "csrf": "The form's security token is missing or expired: reload the page and retry.",
        "too_many_title": "Too many attempts (429)",
        "too_many": (
            "Too many failed sign-ins from this address or with this key: "
            "try again in {minutes} minutes."
        ),
        "too_many_one": (
            "Too many failed sign-ins from this address or with this key: try again in a minute."
        ),
        "origin_title": "Sign-in refused (403)",
        "origin": (
            "This sign-in request comes from another site ({origin}): it is refused. "
            "Open the console at its own address and sign in from its page."
        ),
        "bad_form_title": "Incomplete form",
        "back": "Back",
        "home": "Home",
        "welcome": "Welcome",
        "welcome_text": "Pick a section; only those of your roles are offered.",
        "inbox_title": "Answers waiting for review",
        "inbox_empty": "No answer is waiting for review.",
        "review": "Review",
        "use_case": "Use case",
        "requester": "Requester",
        "created": "Created",
        "state": "State",
        "claimed_by": "Claimed by",
        "claimed_by_you": "Claimed by you until {until}",
        "claimed_by_other": "Claimed by {key} until {until}: one reviewer at a time.",
        "not_claimed": "Free",
        "open": "Open",
        "claim": "Claim",
        "claimed_ok": "You claimed this answer.",
        "draft": "Draft answer",
        "question": "Question",
        "cited_passages": "Cited passages",
        "page": "p. {page}",
        "no_citation": "No cited passage.",
        "model": "Model",
        "decision": "Decision",
        "approve": "Approve",
        "amend": "Amend and release",
        "reject": "Reject",
        "comment": "Comment",
        "amended_text": "Amended text (for “Amend”)",
        "decide": "Record the decision",
        "decided_ok": "Decision recorded: {state}.",
        "four_eyes": "Four-eyes rule: the requester ({key}) cannot review their own request.",
        "decided_by": "Decided by {key}",
        "bad_decision": "Choose a decision: approve, amend or reject.",
        "amend_needs_text": "“Amend” needs the amended text.",
        "text_only_for_amend": "The amended text is only for “Amend”.",
        "documents_title": "Documents",
        "search": "Search",
        "query": "Search",
        "collection": "Collection",
        "all": "All",
        "results": "Results",
        "no_result": "No result.",
        "score": "Score",
        "filename": "File",
        "classification": "Classification",
        "version": "Version",
        "chunks": "Passages",
        "pages": "Pages",
        "ocr_pages": "Pages read by OCR",
        "ocr_confidence": "confidence",
        "ocr_low": "Low OCR confidence: check the text",
        "updated": "Updated",
        "delete": "Delete",
        "delete_confirm": "I confirm removing this document from the index",
        "delete_needs_confirm": "Tick the confirmation to delete.",
        "deleted_ok": "Document deleted ({chunks} passages removed).",
        "no_document": "No document.",
        "source": "Source",
        "next_page": "Next page",
        "query_required": "Type a search.",
        "document": "Document",
        "jobs_title": "Bulk jobs",
        "no_job": "No job.",
        "kind": "Kind",
        "progress": "Progress",
        "objects": "Objects",
        "indexed": "Indexed",
        "unchanged": "Unchanged",
        "failed": "Failed",
        "deleted": "Deleted",
        "skipped": "Skipped",
        "failures": "Failures per object",
        "no_failure": "No failure.",
        "reason": "Reason",
        "message": "Message",
        "job_error": "Job error",
        "live": "Refreshed every 2 s.",
        "usage_title": "Usage per use case",
        "period": "Period",
        "from": "From",
        "to": "To",
        "apply": "Show",
        "no_usage": "No activity in the period.",
        "active_users": "Active users",
        "questions": "Questions",
        "searches": "Searches",
        "denied": "Refused",
        "feedback": "Feedback",
        "useful_rate": "Useful",
        "time_saved": "Time saved (min)",
        "citation_rate": "Answers with citations",
        "refusal_rate": "Refusal rate",
        "approval_rate": "Review approval",
        "latency": "Latency p50 / p95 (ms)",
        "per_day": "Questions and searches per day",
        "bad_date": "Invalid date: use YYYY-MM-DD.",
        "audit_title": "Audit log",
        "chain_ok": "Chain intact: {n} records checked.",
        "chain_broken": "Chain TAMPERED: {n} records checked, {p} problems.",
        "seq": "Seq",
        "problem": "Problem",
        "verify": "Verify again",
        "export": "Export (JSONL)",
        "export_help": (
            "The export holds the records of tenant {tenant}; verifying the whole chain needs "
            "a full export (docfactory audit export)."
        ),
        "dossiers_title": "Dossiers",
        "no_dossier": "No dossier.",
        "steps": "Steps",
        "fields": "Fields",
        "evidence": "Evidence",
        "checks": "Checks",
        "note": "Note",
        "value": "Value",
        "confidence": "Confidence",
        "flow": "Flow",
        "start_run": "Start a run",
        "pending_decisions": "Decisions waiting",
        "approvals": "Approvals: {n}/{m}",
        "first_approval": "First approved by {key} on {time}",
        "amended_ok": "Amendment recorded.",
        "field_name": "Field",
        "new_value": "New value",
        "status": "Status",
        "filter": "Filter",
        "run_started": "Run started: {run}.",
        "unsupported": "This section is not available on this server ({message}).",
        "signoff": "Sign-off",
        "no_worker": (
            "No worker has taken this run for {seconds} s and none is running: the run is "
            "waiting. It starts as soon as a worker does (docfactory serve starts them unless "
            "--dossier-workers 0; otherwise docfactory dossier worker): tell the operations team."
        ),
        "missing_documents": "Missing documents: {names}.",
        "unknown_error": "Refused by the service ({reason}): {message}",
        "latest_state": "Latest state",
        "latest_run": "Latest run",
        "run": "Run",
        "flow_unknown": "Unknown flow “{flow}”.",
        "flows_known": "Possible flows: {flows}.",
        "severity": "Severity",
        "summary": "Summary",
        # -- dossier workplace: new dossier, run summary, decisions (issue 25) --------------
        "new_dossier": "New dossier",
        "display_name": "Dossier name",
        "use_case_free": "Use case id (no list is available here).",
        "flow_help": "The flow to run on this dossier, for example “financement”.",
        "dossier_files": "Dossier files",
        "drop_files": "Drop the files here or choose them (several at once)",
        "files_help": "Up to {n} files, {limit} in all.",
        "remove_file": "Remove",
        "create_and_start": "Create the dossier and start the run",
        "upload_sending": "Sending the files…",
        "upload_processing": "Files received: reading and storing the documents…",
        "upload_failed": "The upload failed (connection lost): try again.",
        "upload_too_large": (
            "The files exceed the largest upload ({limit} in all): remove some or split the "
            "dossier."
        ),
        "too_many_files": "A dossier holds at most {n} files.",
        "created_started": "Dossier created with {n} documents; run started.",
        "created_not_started": "Dossier created, but its run did not start: {problem}",
        "submitted_by": "Submitted by",
        "runs_of_dossier": "Runs",
        "current_step": "Current step",
        "party": "Borrower",
        "amount": "Amount",
        "blocking_checks": "Blocking checks",
        "blocking_failed": "{n} failed",
        "blocking_none": "none failed",
        "not_evaluated_n": "{n} not evaluated",
        "warnings_n": "{n} warning(s)",
        "approvals_label": "Approvals",
        "four_eyes_short": "four eyes",
        "four_eyes_help": (
            "{m} approvals by different people are needed (four eyes); the person who "
            "submitted the dossier cannot approve it."
        ),
        "amend_help": (
            "“Amend and release”: type the new values in the “New value” column of the fields "
            "below; the note is redone, then approved."
        ),
        "show_evidence": "Show the evidence",
        "sources": "Sources",
        "decisions": "Decisions",
        "awaiting_others": (
            "The dossier awaits the reviewers' decision; its result shows here once signed off."
        ),
        "amend_needs_values": "“Amend and release” needs at least one new value.",
        "values_only_for_amend": "New values are only for “Amend and release”.",
        "decided_signed": "Decision recorded: Approval. The dossier is signed off and released.",
        "amended_signed": (
            "Amendment recorded and approved: the dossier is signed off and released."
        ),
        "decided_needs_more": (
            "Approval recorded ({n}/{m}): another person must still approve (four eyes)."
        ),
        "amended_needs_more": (
            "Amendment recorded and approved ({n}/{m}): another person must still approve the "
            "amended version (four eyes)."
        ),
        "decision_applying": "The run is applying it; reload the page in a moment.",
        "amended_redrafting": "The note is being updated: approve it once the new version shows.",
        "amended_not_approved": "It was not approved: {why}",
    },
}


def pick(query_lang: str | None, cookie_lang: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the remembered choice, then the browser's Accept-Language."""
    for candidate in (query_lang, cookie_lang):
        if candidate in LANGS:
            return str(candidate)
    best, best_q = DEFAULT, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str) -> Callable[..., str]:
    table = STRINGS.get(lang, STRINGS[DEFAULT])

    def t(name: str, /, **values: object) -> str:
        text = table.get(name) or STRINGS[DEFAULT].get(name) or name
        return text.format(**values) if values else text

    return t


#: Labels of the services' enums and codes, per kind: run and job states, field statuses, check
#: outcomes and severities, decision kinds, document states, classifications, roles, steps and
#: the dossier list's states. A value without a label is shown as it comes (and the
#: untranslated-enum test catches it on a French page).
ENUMS: dict[str, dict[str, dict[str, str]]] = {
    "fr": {
        "run_state": {
            "QUEUED": "En file d'attente",
            "RUNNING": "En cours",
            "INCOMPLETE": "Incomplet",
            "AWAITING_SIGNOFF": "En attente de signature",
            "ESCALATED": "Escaladé",
            "COMPLETED": "Signé et publié",
            "REJECTED": "Rejeté",
            "CANCELLED": "Annulé",
            "FAILED": "En échec",
        },
        "dossier_state": {
            "signed": "Signé",
            "rejected": "Rejeté",
            "awaiting": "En attente de décision",
            "escalated": "Décision en retard (escaladé)",
            "incomplete": "Incomplet",
            "running": "En cours",
            "queued": "En file d'attente",
            "failed": "En échec",
            "cancelled": "Annulé",
            "new": "Jamais lancé",
        },
        "field_status": {
            "FOUND": "Trouvé",
            "AMENDED": "Corrigé",
            "MISSING": "Absent",
            "NOT_FOUND": "Introuvable",
            "UNSUPPORTED": "Non étayé",
        },
        "check_outcome": {
            "PASSED": "Conforme",
            "FAILED": "Non conforme",
            "NOT_EVALUATED": "Non évalué",
        },
        "severity": {"blocking": "bloquant", "warning": "avertissement"},
        "citation_source": {"dossier": "dossier", "rules": "règles"},
        "decision_kind": {
            "APPROVE": "Approbation",
            "AMEND": "Correction",
            "REJECT": "Rejet",
            "approve": "Approbation",
            "amend": "Correction",
            "reject": "Rejet",
        },
        "review_state": {
            "PENDING_REVIEW": "En attente de relecture",
            "APPROVED": "Approuvée",
            "AMENDED": "Modifiée puis publiée",
            "REJECTED": "Rejetée",
        },
        "job_state": {
            "QUEUED": "En file d'attente",
            "RUNNING": "En cours",
            "SUCCEEDED": "Terminé",
            "FAILED": "En échec",
            "CANCELLED": "Annulé",
        },
        "job_kind": {
            "INGEST_PREFIX": "Import d'un dossier de stockage",
            "NOTIFICATION": "Notification de stockage",
            "UPLOAD": "Dépôt en arrière-plan",
        },
        "doc_state": {"PROCESSING": "En traitement", "INDEXED": "Indexé", "FAILED": "En échec"},
        "classification": {
            "PUBLIC": "Public",
            "INTERNAL": "Interne",
            "CONFIDENTIAL": "Confidentiel",
            "RESTRICTED": "Restreint",
        },
        "role": {
            "reviewer": "relecteur",
            "ingester": "alimentation",
            "operator": "exploitation",
            "owner": "responsable",
            "admin": "administration",
            "auditor": "audit",
            "worker": "worker",
        },
        "step": {
            "classify": "Classement",
            "extract": "Extraction — {name}",
            "check": "Contrôles",
            "check_round": "Contrôles (version {n})",
            "retrieve": "Recherche des règles applicables",
            "draft": "Note (version {n})",
            "signoff": "Signature",
            "release": "Publication",
            "run": "Traitement",
        },
    },
    "en": {
        "run_state": {
            "QUEUED": "Queued",
            "RUNNING": "Running",
            "INCOMPLETE": "Incomplete",
            "AWAITING_SIGNOFF": "Awaiting sign-off",
            "ESCALATED": "Escalated",
            "COMPLETED": "Signed off and released",
            "REJECTED": "Rejected",
            "CANCELLED": "Cancelled",
            "FAILED": "Failed",
        },
        "dossier_state": {
            "signed": "Signed off",
            "rejected": "Rejected",
            "awaiting": "Awaiting a decision",
            "escalated": "Decision overdue (escalated)",
            "incomplete": "Incomplete",
            "running": "Running",
            "queued": "Queued",
            "failed": "Failed",
            "cancelled": "Cancelled",
            "new": "Never run",
        },
        "field_status": {
            "FOUND": "Found",
            "AMENDED": "Amended",
            "MISSING": "Missing",
            "NOT_FOUND": "Not found",
            "UNSUPPORTED": "Unsupported",
        },
        "check_outcome": {"PASSED": "Passed", "FAILED": "Failed", "NOT_EVALUATED": "Not evaluated"},
        "severity": {"blocking": "blocking", "warning": "warning"},
        "citation_source": {"dossier": "dossier", "rules": "rules"},
        "decision_kind": {
            "APPROVE": "Approval",
            "AMEND": "Amendment",
            "REJECT": "Rejection",
            "approve": "Approval",
            "amend": "Amendment",
            "reject": "Rejection",
        },
        "review_state": {
            "PENDING_REVIEW": "Waiting for review",
            "APPROVED": "Approved",
            "AMENDED": "Amended and released",
            "REJECTED": "Rejected",
        },
        "job_state": {
            "QUEUED": "Queued",
            "RUNNING": "Running",
            "SUCCEEDED": "Succeeded",
            "FAILED": "Failed",
            "CANCELLED": "Cancelled",
        },
        "job_kind": {
            "INGEST_PREFIX": "Storage folder import",
            "NOTIFICATION": "Storage notification",
            "UPLOAD": "Background upload",
        },
        "doc_state": {"PROCESSING": "Processing", "INDEXED": "Indexed", "FAILED": "Failed"},
        "classification": {
            "PUBLIC": "Public",
            "INTERNAL": "Internal",
            "CONFIDENTIAL": "Confidential",
            "RESTRICTED": "Restricted",
        },
        "role": {
            "reviewer": "reviewer",
            "ingester": "ingester",
            "operator": "operator",
            "owner": "owner",
            "admin": "admin",
            "auditor": "auditor",
            "worker": "worker",
        },
        "step": {
            "classify": "Classification",
            "extract": "Extraction — {name}",
            "check": "Checks",
            "check_round": "Checks (version {n})",
            "retrieve": "Applicable rules retrieval",
            "draft": "Note (version {n})",
            "signoff": "Sign-off",
            "release": "Release",
            "run": "Run",
        },
    },
}

#: Reasons (ErrorInfo reasons of the services, run error reasons, the console's own) as
#: sentences; ``{...}`` values come from the caller (the flow typed, the seconds queued).
REASONS: dict[str, dict[str, str]] = {
    "fr": {
        "SAME_REVIEWER": (
            "Vous avez déjà approuvé ce traitement : la seconde approbation doit venir d'une "
            "autre personne (principe des quatre yeux)."
        ),
        "SUBMITTER_CANNOT_APPROVE": (
            "Vous avez soumis ce dossier : vous ne pouvez pas l'approuver (principe des quatre "
            "yeux)."
        ),
        "SIGNOFF_ROLE_REQUIRED": "Votre rôle ne permet pas de signer ce traitement.",
        "RUN_NOT_AWAITING_SIGNOFF": (
            "Ce traitement n'attend plus de décision (déjà décidé, annulé ou terminé) : "
            "rechargez la page."
        ),
        "COMMENT_REQUIRED": "Un rejet demande un commentaire.",
        "AMENDMENTS_REQUIRED": "Une correction demande au moins une nouvelle valeur.",
        "UNKNOWN_FIELD": "Un champ corrigé n'existe pas dans ce traitement.",
        "INVALID_FIELD_VALUE": "Une valeur corrigée n'a pas le format attendu pour ce champ.",
        "INVALID_DECISION_KIND": "Choisissez une décision : approuver, modifier ou rejeter.",
        "RUN_ENDED": "Ce traitement est terminé.",
        "CANCELLED": "Le traitement a été annulé.",
        "NO_WORKER": "Aucun worker n'a pris ce dossier.",
        "FLOW_NOT_FOUND": "Flux « {flow} » inconnu.",
        "FLOW_REQUIRED": "Indiquez le flux à lancer.",
        "FLOW_NOT_ALLOWED": "Ce flux n'est pas autorisé pour le cas d'usage de ce dossier.",
        "CLASSIFICATION_ABOVE_CEILING": (
            "La classification du dossier dépasse le plafond autorisé pour ce cas d'usage."
        ),
        "MISSING_DOCUMENTS": "Des pièces obligatoires manquent au dossier.",
        "STEP_FAILED": "Une étape a échoué malgré les nouvelles tentatives.",
        "DOSSIER_NOT_FOUND": "Ce dossier n'existe pas ou n'est pas visible pour votre entité.",
        "RUN_NOT_FOUND": "Ce traitement n'existe pas ou n'est pas visible pour votre entité.",
        "INVALID_STATE": "État inconnu : « {value} ».",
        "PERMISSION_DENIED": "Votre rôle ne permet pas cette action.",
        # -- creating a dossier (issue 25) ------------------------------------------------------
        "INGESTER_ROLE_REQUIRED": (
            "Déposer des fichiers demande le rôle « alimentation » dans cette organisation : "
            "demandez-le à l'administrateur."
        ),
        "USE_CASE_REQUIRED": "Choisissez le cas d'usage du dossier.",
        "UNKNOWN_USE_CASE": "Ce cas d'usage n'existe pas.",
        "USE_CASE_NOT_ALLOWED_FOR_KEY": "Ce cas d'usage ne vous est pas ouvert.",
        "USE_CASE_NOT_ALLOWED_FOR_TENANT": "Ce cas d'usage n'est pas ouvert à votre entité.",
        "DOSSIER_EMPTY": "Ajoutez au moins un fichier au dossier.",
        "TOO_MANY_DOCUMENTS": "Le dossier compte trop de pièces.",
        "EMPTY_FILE": "Un des fichiers est vide.",
        "FILE_TOO_LARGE": "Un des fichiers dépasse la taille maximale acceptée par le serveur.",
        "INVALID_CLASSIFICATION": "Classification inconnue.",
        "INGESTION_UNAVAILABLE": "Ce serveur ne peut pas créer de dossiers (pas d'ingestion).",
        "UNSUPPORTED_FORMAT": "Le format d'un des fichiers n'est pas pris en charge.",
        "UNKNOWN_FORMAT": "Le format d'un des fichiers n'est pas reconnu.",
        "NO_TEXT_EXTRACTED": "Aucun texte n'a pu être lu dans un des fichiers.",
        "UNREADABLE_DOCUMENT": "Un des fichiers est illisible ou endommagé.",
        "QUOTA_EXCEEDED": "Quota atteint : réessayez plus tard.",
    },
    "en": {
        "SAME_REVIEWER": (
            "You already approved this run: the second approval must come from another person "
            "(four-eyes rule)."
        ),
        "SUBMITTER_CANNOT_APPROVE": (
            "You submitted this dossier: you cannot approve it (four-eyes rule)."
        ),
        "SIGNOFF_ROLE_REQUIRED": "Your role does not allow signing off this run.",
        "RUN_NOT_AWAITING_SIGNOFF": (
            "This run no longer waits for a decision (already decided, cancelled or ended): "
            "reload the page."
        ),
        "COMMENT_REQUIRED": "A rejection needs a comment.",
        "AMENDMENTS_REQUIRED": "An amendment needs at least one new value.",
        "UNKNOWN_FIELD": "An amended field does not exist in this run.",
        "INVALID_FIELD_VALUE": "An amended value does not have the format this field expects.",
        "INVALID_DECISION_KIND": "Choose a decision: approve, amend or reject.",
        "RUN_ENDED": "This run has ended.",
        "CANCELLED": "The run was cancelled.",
        "NO_WORKER": "No worker has taken this run.",
        "FLOW_NOT_FOUND": "Unknown flow “{flow}”.",
        "FLOW_REQUIRED": "Type the flow to start.",
        "FLOW_NOT_ALLOWED": "This flow is not allowed for this dossier's use case.",
        "CLASSIFICATION_ABOVE_CEILING": (
            "The dossier's classification is above the ceiling of its use case."
        ),
        "MISSING_DOCUMENTS": "Required documents are missing from the dossier.",
        "STEP_FAILED": "A step failed after its retries.",
        "DOSSIER_NOT_FOUND": "This dossier does not exist or is not visible to your tenant.",
        "RUN_NOT_FOUND": "This run does not exist or is not visible to your tenant.",
        "INVALID_STATE": "Unknown state: “{value}”.",
        "PERMISSION_DENIED": "Your role does not allow this action.",
        # -- creating a dossier (issue 25) ------------------------------------------------------
        "INGESTER_ROLE_REQUIRED": (
            "Uploading files needs the ingester role in this organisation: ask the "
            "administrator for it."
        ),
        "USE_CASE_REQUIRED": "Choose the dossier's use case.",
        "UNKNOWN_USE_CASE": "This use case does not exist.",
        "USE_CASE_NOT_ALLOWED_FOR_KEY": "This use case is not open to you.",
        "USE_CASE_NOT_ALLOWED_FOR_TENANT": "This use case is not open to your tenant.",
        "DOSSIER_EMPTY": "Add at least one file to the dossier.",
        "TOO_MANY_DOCUMENTS": "The dossier has too many documents.",
        "EMPTY_FILE": "One of the files is empty.",
        "FILE_TOO_LARGE": "One of the files is larger than the server accepts.",
        "INVALID_CLASSIFICATION": "Unknown classification.",
        "INGESTION_UNAVAILABLE": "This server cannot create dossiers (no ingestion).",
        "UNSUPPORTED_FORMAT": "The format of one of the files is not supported.",
        "UNKNOWN_FORMAT": "The format of one of the files is not recognised.",
        "NO_TEXT_EXTRACTED": "No text could be read from one of the files.",
        "UNREADABLE_DOCUMENT": "One of the files is unreadable or damaged.",
        "QUOTA_EXCEEDED": "Quota reached: try again later.",
    },
}

#: Counted words: (one, other). French uses the singular for 0 and 1, English for 1 only.
PLURALS: dict[str, dict[str, tuple[str, str]]] = {
    "fr": {
        "pages": ("{n} page", "{n} pages"),
        "people": ("{n} personne", "{n} personnes"),
        "documents": ("{n} document", "{n} documents"),
        "runs": ("{n} traitement", "{n} traitements"),
        "seconds": ("{n} seconde", "{n} secondes"),
    },
    "en": {
        "pages": ("{n} page", "{n} pages"),
        "people": ("{n} person", "{n} people"),
        "documents": ("{n} document", "{n} documents"),
        "runs": ("{n} run", "{n} runs"),
        "seconds": ("{n} second", "{n} seconds"),
    },
}


def labeler(lang: str) -> Callable[[str, object], str]:
    """``label(kind, value)``: the label of an enum value, the value itself when unknown."""
    table = ENUMS.get(lang, ENUMS[DEFAULT])

    def label(kind: str, value: object, /) -> str:
        text = str(value)
        return table.get(kind, {}).get(text) or ENUMS[DEFAULT].get(kind, {}).get(text) or text

    return label


def pluralizer(lang: str) -> Callable[[str, int], str]:
    """``plural(word, n)``: "1 page" / "2 pages" (French: "0 page", "1 personne")."""
    table = PLURALS.get(lang, PLURALS[DEFAULT])

    def plural(word: str, n: int, /) -> str:
        one, other = table[word]
        singular = n in (0, 1) if lang == "fr" else n == 1
        return (one if singular else other).format(n=n)

    return plural


def reason_text(lang: str, reason: str, message: str = "", /, **values: object) -> str:
    """A service's refusal as a sentence of the language: its reason's text when known (the
    server's English message is then left out), else the reason and message as they came."""
    table = REASONS.get(lang, REASONS[DEFAULT])
    text = table.get(reason)
    if text is None:
        return translator(lang)("unknown_error", reason=reason, message=message)
    try:
        return text.format(**values)
    except (KeyError, IndexError):
        return text


# -- ask, feedback and the usage page's dossier section (console/routes.py) -------------------
_ASK_STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "ask": "Poser une question",
        "ask_title": "Poser une question",
        "ask_intro": (
            "La réponse s'appuie sur les documents de votre entité et cite ses sources ; "
            "elle s'affiche au fil de sa rédaction."
        ),
        "ask_question": "Votre question",
        "ask_button": "Demander",
        "use_case_default": "Sans cas d'usage (par défaut)",
        "answer": "Réponse",
        "sources": "Sources",
        "no_source": "Aucune source citée.",
        "answering": "Rédaction en cours…",
        "held_for_review": (
            "Cette réponse est retenue pour relecture humaine (demande {review_id}) : elle sera "
            "visible dès qu'un relecteur l'aura validée."
        ),
        "insufficient": "Les documents disponibles ne suffisent pas pour répondre.",
        "answer_failed": "La réponse a été interrompue : {message}",
        "answer_ref": "Réponse n° {id}",
        "question_too_long": "La question dépasse {n} caractères.",
        "feedback_title": "Votre avis",
        "feedback_verdict": "Cette réponse vous a-t-elle aidé·e ?",
        "feedback_run_verdict": "Ce dossier traité vous a-t-il aidé·e ?",
        "feedback_useful": "👍 Utile",
        "feedback_not_useful": "👎 Pas utile",
        "feedback_minutes": "Minutes gagnées",
        "feedback_comment": "Commentaire",
        "feedback_send": "Envoyer mon avis",
        "feedback_thanks": "Merci, votre avis est enregistré.",
        "feedback_already": "Vous avez déjà donné votre avis ici.",
        "feedback_empty": "Choisissez utile ou pas utile, des minutes ou un commentaire.",
        "feedback_bad_minutes": "Minutes gagnées : un nombre entre 0 et 1440.",
        "feedback_bad_target": "Avis sans réponse ni dossier.",
        "feedback_failed": "Avis refusé : {message}",
        "dossier_usage": "Dossiers",
        "dossier_runs": "Traitements",
        "runs_by_state": "Traitements par état",
        "run_state_col": "État",
        "count": "Nombre",
        "dossier_approval_rate": "Taux d'approbation (incomplets inclus)",
        "median_decision": "Délai médian de décision (depuis le démarrage, sans la file)",
        "usage_approvals": "Approbations",
        "usage_rejections": "Rejets",
        "fields_corrected": "Champs corrigés",
        "field_col": "Champ",
        "corrections": "Corrections",
        "no_runs": "Aucun traitement de dossier sur la période.",
        "dossier_feedback": "Avis sur les dossiers signés",
        "internal_searches": "Recherches internes des dossiers (non comptées)",
        "denied_other": "Autres refus (hors questions)",
        "minutes_short": "{n} min",
        "not_available": "n/d",
    },
    "en": {
        "ask": "Ask a question",
        "ask_title": "Ask a question",
        "ask_intro": (
            "The answer relies on your organisation's documents and cites its sources; it shows "
            "as it is written."
        ),
        "ask_question": "Your question",
        "ask_button": "Ask",
        "use_case_default": "No use case (default)",
        "answer": "Answer",
        "sources": "Sources",
        "no_source": "No source cited.",
        "answering": "Writing…",
        "held_for_review": (
            "This answer is held for human review (request {review_id}): it will show once a "
            "reviewer has approved it."
        ),
        "insufficient": "The available documents are not enough to answer.",
        "answer_failed": "The answer was interrupted: {message}",
        "answer_ref": "Answer #{id}",
        "question_too_long": "The question exceeds {n} characters.",
        "feedback_title": "Your feedback",
        "feedback_verdict": "Did this answer help you?",
        "feedback_run_verdict": "Did this processed dossier help you?",
        "feedback_useful": "👍 Useful",
        "feedback_not_useful": "👎 Not useful",
        "feedback_minutes": "Minutes saved",
        "feedback_comment": "Comment",
        "feedback_send": "Send my feedback",
        "feedback_thanks": "Thank you, your feedback is recorded.",
        "feedback_already": "You already gave your feedback here.",
        "feedback_empty": "Choose useful or not useful, minutes or a comment.",
        "feedback_bad_minutes": "Minutes saved: a number between 0 and 1440.",
        "feedback_bad_target": "Feedback without an answer or a dossier.",
        "feedback_failed": "Feedback refused: {message}",
        "dossier_usage": "Dossiers",
        "dossier_runs": "Runs",
        "runs_by_state": "Runs by state",
        "run_state_col": "State",
        "count": "Count",
        "dossier_approval_rate": "Approval rate (incomplete included)",
        "median_decision": "Median time to decision (from start, queue excluded)",
        "usage_approvals": "Approvals",
        "usage_rejections": "Rejections",
        "fields_corrected": "Fields corrected",
        "field_col": "Field",
        "corrections": "Corrections",
        "no_runs": "No dossier run in the period.",
        "dossier_feedback": "Feedback on signed dossiers",
        "internal_searches": "Dossiers' internal searches (not counted)",
        "denied_other": "Other refusals (not questions)",
        "minutes_short": "{n} min",
        "not_available": "n/a",
    },
}
for _lang, _strings in _ASK_STRINGS.items():
    for _name, _text in _strings.items():
        STRINGS[_lang].setdefault(_name, _text)
