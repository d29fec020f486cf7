"""Formats corpus files that used to yield no text although they hold some."""

from __future__ import annotations

from docfactory.ingestion.adapters.parser import UnstructuredParser
from tests.conftest import shared_data


def test_json_whose_structure_is_not_text_yields_its_strings() -> None:
    # an unstructured-elements JSON whose elements have empty "text": the values are nested
    src = shared_data("formats", "test_evaluate_files", "unstructured_output", "form.json")
    doc = UnstructuredParser().parse(src, src.name)
    texts = [e.text for e in doc.elements]
    assert doc.strategy == "json_strings"
    assert "MOCK KEY" in texts and "MOCK VALUE" in texts
