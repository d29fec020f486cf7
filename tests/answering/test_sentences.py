"""Sentence-level answer selection: splitting (French/English rules, headings, lists), scoring
and selection (quote what answers, never a heading; say so when nothing does)."""

from __future__ import annotations

from docfactory.answering.sentences import (
    HEADING,
    ITEM,
    QUESTION,
    SENTENCE,
    SelectionConfig,
    answer_type,
    order_passages,
    score_units,
    select,
    split_sentences,
    split_units,
)


def test_french_abbreviations_initials_and_numbers_do_not_end_sentences() -> None:
    text = (
        "M. Dupont a saisi le CSE le 3 mars, cf. art. L. 2315-4 du code du travail. "
        "Le délai est de 2.5 jours ouvrés, p. ex. pour une réunion ordinaire ! "
        "J. Martin conteste… Mme Durand répond. Est-ce suffisant ? Oui."
    )
    assert split_sentences(text) == [
        "M. Dupont a saisi le CSE le 3 mars, cf. art. L. 2315-4 du code du travail.",
        "Le délai est de 2.5 jours ouvrés, p. ex. pour une réunion ordinaire !",
        "J. Martin conteste…",
        "Mme Durand répond.",
        "Est-ce suffisant ?",
        "Oui.",
    ]


def test_english_abbreviations_and_closing_quotes() -> None:
    text = (
        'Dr. Smith said "the vote is open." The U.S. office, e.g. in Boston, agreed. '
        "Mr. Jones left at 5 p.m. yesterday."
    )
    assert split_sentences(text) == [
        'Dr. Smith said "the vote is open."',
        "The U.S. office, e.g. in Boston, agreed.",
        "Mr. Jones left at 5 p.m. yesterday.",
    ]


def test_units_headings_questions_lists_and_wrapped_lines() -> None:
    text = (
        "Réunion du CSE\n"
        "COMMENT CHOISIR ?\n"
        "LE BON MATÉRIEL\n"
        "Le dispositif technique doit garantir :\n"
        "- l'identification des membres ;\n"
        "- leur participation effective.\n"
        "Le vote a lieu à bulletin secret lorsque\n"
        "la loi le prévoit. Il est ouvert par le président.\n"
        "1. Vérifier le matériel.\n"
        "Rappel"
    )
    units = split_units(text, section_headings=["Rappel"])
    kinds = [(u.kind, u.text) for u in units]
    assert kinds == [
        (HEADING, "Réunion du CSE"),  # first line without final punctuation: a title
        (QUESTION, "COMMENT CHOISIR ?"),
        (HEADING, "LE BON MATÉRIEL"),
        (SENTENCE, "Le dispositif technique doit garantir :"),
        (ITEM, "- l'identification des membres ;"),
        (ITEM, "- leur participation effective."),
        (SENTENCE, "Le vote a lieu à bulletin secret lorsque la loi le prévoit."),
        (SENTENCE, "Il est ouvert par le président."),
        (ITEM, "1. Vérifier le matériel."),
        (HEADING, "Rappel"),  # a section heading of the chunk
    ]
    # list items point to the line that introduces them; units know the headings above them
    assert units[4].lead == units[5].lead == 3
    assert units[3].headings[-1] == 2 and units[4].lead == 3
    assert units[6].paragraph == units[7].paragraph


def test_infographic_fragments_become_readable_units() -> None:
    # PDF infographics come out as short lines: consecutive labels are one unit, shown with
    # " / " between them; upper-case lines are headings.
    text = (
        "LE CHOIX DE LA VISIOCONFERENCE\n\nDécision de l’employeur\n\n"
        "Information du CSE dans la convocation\n\nLE BON MATERIEL"
    )
    units = split_units(text)
    assert [(u.kind, u.text) for u in units] == [
        (HEADING, "LE CHOIX DE LA VISIOCONFERENCE"),
        (SENTENCE, "Décision de l’employeur / Information du CSE dans la convocation"),
        (HEADING, "LE BON MATERIEL"),
    ]


def test_answer_types() -> None:
    assert answer_type("En quelle année le traité fut-il signé ?") == "date"
    assert answer_type("Quand a eu lieu la bataille ?") == "date"
    assert answer_type("Combien de salariés compte l'entreprise ?") == "number"
    assert answer_type("Qui préside le CSE ?") == "name"
    assert answer_type("Qu'est-ce qui a permis la victoire ?") == ""
    assert answer_type("How many members vote?") == "number"


def test_selects_the_answering_sentence_not_the_heading() -> None:
    passages = [
        "Comment réunir le CSE en visioconférence ?\n\n"
        "RÉUNIR LE CSE EN VISIOCONFÉRENCE\n\n"
        "Le recours à la visioconférence est décidé par l'employeur. "
        "Le dispositif doit garantir l'identification des membres du CSE et leur participation "
        "effective. La pause déjeuner dure une heure.",
        "Le CSE se réunit au moins une fois par mois dans les entreprises d'au moins 300 salariés.",
    ]
    sel = select(
        "Quelles sont les conditions pour réunir le CSE en visioconférence ?", passages, "fr"
    )
    assert not sel.insufficient
    quoted = " ".join(q for _, q in sel.quotes)
    assert "visioconférence est décidé par l'employeur" in quoted
    assert "Comment réunir" not in quoted and "RÉUNIR LE CSE" not in quoted
    assert "pause déjeuner" not in quoted
    assert sel.quotes[0][0] == 0


def test_a_unit_that_holds_the_question_itself_is_not_an_answer() -> None:
    """An example command or an FAQ line that contains the question word for word is an echo of
    it: the sentence that answers is quoted instead (the demo on the project's own guides)."""
    question = "Comment ingérer une archive de documents depuis MinIO ?"
    passages = [
        "Ces guides servent aussi de corpus de démonstration :\n"
        "docfactory ingest docs --collection demo\n"
        f'docfactory ask "{question}" --collection demo',
        "Les archives (.zip, .tar.gz) déposées dans un bucket MinIO s'ingèrent par des tâches "
        "de JobsService, exécutées par les workers. Les tâches se suivent avec GetJob.",
    ]
    sel = select(question, passages, "fr")
    quoted = " ".join(q for _, q in sel.quotes)
    assert "déposées dans un bucket MinIO" in quoted
    assert "docfactory ask" not in quoted
    # two words are too few to call a unit an echo: such a unit can still answer
    assert not select(
        "Fichiers acceptés ?", ["Fichiers acceptés : PDF, DOCX et HTML."], "fr"
    ).insufficient


def test_list_item_is_quoted_with_the_line_that_introduces_it() -> None:
    text = (
        "Le président ouvre la séance. Le dispositif technique doit garantir :\n"
        "- la retransmission continue et simultanée du son et de l'image ;\n"
        "- la confidentialité des votes."
    )
    sel = select("Comment est assurée la retransmission du son et de l'image ?", [text], "fr")
    (_, quote), *_ = sel.quotes
    assert quote.startswith("Le dispositif technique doit garantir :")
    assert "- la retransmission continue et simultanée du son et de l'image ;" in quote
    assert "Le président ouvre la séance." not in quote


def test_sentence_opening_on_a_pronoun_brings_the_one_before() -> None:
    text = (
        "Yoweri Museveni prend le pouvoir en 1986. Dès 1987, il abandonne ses principes "
        "marxistes. La capitale est Kampala."
    )
    sel = select("Qui abandonne ses principes marxistes en 1987 ?", [text], "fr")
    quote = sel.quotes[0][1]
    assert quote == (
        "Yoweri Museveni prend le pouvoir en 1986. Dès 1987, il abandonne ses principes marxistes."
    )


def test_non_adjacent_sentences_of_one_passage_are_joined_with_an_ellipsis() -> None:
    text = (
        "Le comité se réunit chaque mois. La cantine ouvre à midi. Le parking ferme le soir. "
        "Le comité vote à bulletin secret."
    )
    sel = select("Comment le comité se réunit-il et vote-t-il ?", [text], "fr")
    assert sel.quotes == [
        (0, "Le comité se réunit chaque mois. […] Le comité vote à bulletin secret.")
    ]


def test_nothing_quoted_when_no_sentence_answers() -> None:
    passages = [
        "LA CAPITALE DU CSE\n\nLe parking est au sous-sol. Il ferme à 20 heures.",
        "La cantine ouvre à midi.",
    ]
    for question in (
        "Quelle est la capitale de la Mongolie ?",
        "Who won the football world cup in 1998?",
        "Comment faire une pâte à crêpes ?",
    ):
        sel = select(question, passages, "fr")
        assert sel.insufficient, (question, sel.quotes)


def test_passage_order_puts_the_answer_bearing_passage_first() -> None:
    passages = [
        "Le règlement intérieur est affiché à l'entrée.",
        "Les horaires sont affichés. La cantine ouvre à midi et ferme à quatorze heures.",
        "Le parking est au sous-sol.",
    ]
    assert order_passages("À quelle heure ouvre la cantine ?", passages, "fr") == [1, 0, 2]


def test_a_unit_longer_than_the_budget_is_cut_around_its_matches() -> None:
    filler = " ".join(f"mot{i}" for i in range(200))
    text = f"{filler} le CSE se réunit en visioconférence sur décision de l'employeur {filler}"
    sel = select("Qui décide de réunir le CSE en visioconférence ?", [text], "fr")
    (_, quote), *_ = sel.quotes
    assert quote.startswith("… ") and quote.endswith(" …")
    assert len(quote.split()) <= SelectionConfig().unit_words + 2  # and the two cut marks
    assert "le CSE se réunit en visioconférence sur décision de l'employeur" in quote


def test_empty_passages_and_questions_without_content_terms() -> None:
    assert select("Quelle est la règle ?", ["", "   \n\n "], "fr").insufficient
    assert select("Qui ?", ["Le CSE se réunit chaque mois."], "fr").insufficient
    assert order_passages("Qui ?", ["", "a"], "fr") == [0, 1]


def test_the_sentence_after_a_matching_one_shares_its_score() -> None:
    text = (
        "Le traité de la Tafna est signé par l’émir Abdelkader. "
        "Cette signature a lieu le 30 mai 1837. "
        "La paix dure deux ans, jusqu'en 1839."
    )
    scored = score_units("Quand le traité de la Tafna est-il signé ?", [split_units(text)], "fr")
    by_text = {s.unit.text: s for s in scored}
    after = by_text["Cette signature a lieu le 30 mai 1837."]
    later = by_text["La paix dure deux ans, jusqu'en 1839."]
    assert after.own == later.own == 0
    assert after.support > 0 and later.support == 0
    assert after.score > later.score


def test_sentences_of_several_passages_that_score_alike_are_all_quoted() -> None:
    passages = [
        "Le CSE est consulté sur la durée du travail. Il se réunit chaque mois.",
        "La durée du travail est fixée par l’accord d’entreprise. Le texte est affiché.",
    ]
    sel = select("Qui fixe la durée du travail ?", passages, "fr")
    assert sorted(p for p, _ in sel.quotes) == [0, 1]
    words = sum(len(q.split()) for _, q in sel.quotes)
    assert words <= SelectionConfig().max_words
    assert all("affiché" not in q and "chaque mois" not in q for _, q in sel.quotes)
