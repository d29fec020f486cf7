"""What `docfactory eval --answers` counts as quoting a heading."""

from __future__ import annotations

from docfactory.evaluation.runner import quotes_heading

PASSAGE = (
    "France\nParis est la capitale de la France depuis 987. Elle compte deux millions d'habitants."
)


def test_a_quote_of_sentences_does_not_quote_the_title_even_when_it_names_it() -> None:
    assert not quotes_heading("Paris est la capitale de la France depuis 987.", PASSAGE)
    assert not quotes_heading(
        "Paris est la capitale de la France depuis 987. Elle compte deux millions d'habitants.",
        PASSAGE,
    )


def test_a_quote_that_runs_the_title_into_a_sentence_quotes_it() -> None:
    # what the former extractive answer did: the title line read as a first sentence
    assert quotes_heading("France Paris est la capitale de la France depuis 987.", PASSAGE)


def test_section_headings_and_question_titles() -> None:
    passage = (
        "Comment réunir le CSE ?\n\nDécision de l'employeur.\n\nConvocation\n\n"
        "Le CSE est informé dans la convocation."
    )
    section = ["Convocation"]  # the chunk's section path: that line is a heading
    assert quotes_heading("Comment réunir le CSE ?", passage, section)
    assert quotes_heading("Convocation Le CSE est informé dans la convocation.", passage, section)
    assert not quotes_heading("Le CSE est informé dans la convocation.", passage, section)
    assert not quotes_heading(
        "Décision de l'employeur. Le CSE est informé dans la convocation.", passage, section
    )
