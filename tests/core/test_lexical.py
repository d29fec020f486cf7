"""Tests for docfactory.core.lexical (analyzers, BM25 sparse vectors, Qdrant IDF)."""

from __future__ import annotations

import pytest

from docfactory.core.lexical import (
    Analyzer,
    Bm25Params,
    SparseEncoder,
    SparseVector,
    detect_language,
    get_analyzer,
    term_id,
)


@pytest.fixture(scope="module")
def fr() -> Analyzer:
    return get_analyzer("fr")


@pytest.fixture(scope="module")
def en() -> Analyzer:
    return get_analyzer("en")


# --------------------------------------------------------------------------- analyzers


def test_get_analyzer_languages() -> None:
    assert get_analyzer("fr").language == "fr"
    assert get_analyzer("en").language == "en"
    with pytest.raises(ValueError, match="unsupported language"):
        get_analyzer("de")
    with pytest.raises(ValueError):
        SparseEncoder(language="es")


@pytest.mark.parametrize(
    ("accented", "plain"),
    [
        ("Élève", "eleve"),
        ("ÉLÈVES", "eleve"),
        ("société", "SOCIETE"),
        ("responsabilité", "responsabilite"),
        ("sécurité", "securite"),
        ("employé", "employe"),
        ("façade", "facade"),
        ("œuvre", "oeuvre"),
        ("Cæsar", "caesar"),
    ],
)
def test_french_accent_folding(fr: Analyzer, accented: str, plain: str) -> None:
    terms = fr.tokens(accented)
    assert len(terms) == 1
    assert terms == fr.tokens(plain)
    assert terms[0].isascii()


@pytest.mark.parametrize("apostrophe", ["'", "\u2019"])
def test_french_elision(fr: Analyzer, apostrophe: str) -> None:
    terms = fr.tokens(f"l{apostrophe}article 1240")
    assert terms == [*fr.tokens("article"), "1240"]
    assert fr.tokens(f"d{apostrophe}une société") == fr.tokens("société")
    assert fr.tokens(f"L{apostrophe}EMPLOYEUR") == fr.tokens("employeur")
    # Elided function words disappear entirely.
    elided = "jusqu{a}à lorsqu{a}il qu{a}il d{a}un s{a}il n{a}est c{a}est j{a}ai m{a}a t{a}es"
    assert fr.tokens(elided.format(a=apostrophe)) == []
    # Non-elision apostrophes are kept inside one term.
    assert fr.tokens(f"prud{apostrophe}hommes") == fr.tokens("prudhommes")


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("articles", "article"),
        ("contrats", "contrat"),
        ("sociétés", "société"),
        ("chevaux", "cheval"),
        ("journaux", "journal"),
        ("obligations", "obligation"),
        # feminine / plural past participles conflate with the masculine form
        ("réparées", "réparé"),
        ("résiliée", "résilié"),
        ("années", "année"),
    ],
)
def test_french_plural_and_gender_folding(fr: Analyzer, plural: str, singular: str) -> None:
    assert fr.tokens(plural) == fr.tokens(singular)
    assert len(fr.tokens(plural)) == 1


def test_french_distinct_words_stay_distinct(fr: Analyzer) -> None:
    # Folding/stemming must not collapse unrelated legal terms.
    terms = {fr.tokens(w)[0] for w in ["contrat", "contrôle", "société", "sécurité", "article"]}
    assert len(terms) == 5


def test_french_stop_words_removed(fr: Analyzer) -> None:
    assert fr.tokens("le la les de des du et à au aux un une est sont été") == []
    assert fr.tokens("Le contrat de vente et les obligations des parties") == (
        fr.tokens("contrat") + fr.tokens("vente") + fr.tokens("obligation") + fr.tokens("partie")
    )


def test_french_digits_and_article_numbers(fr: Analyzer) -> None:
    assert fr.tokens("article 1240 alinéa 2") == [
        *fr.tokens("article"),
        "1240",
        *fr.tokens("alinéa"),
        "2",
    ]
    code_ref = fr.tokens("L1234-5")
    assert code_ref == ["l1234", "1234", "5"]
    # "L. 1234-5" and "article L1234-5" share the searchable number terms.
    assert {"1234", "5"} <= set(fr.tokens("L. 1234-5"))
    assert set(fr.tokens("R.1234-5")) >= {"1234", "5"}
    # Single letters are dropped, single digits kept.
    assert fr.tokens("a b x 7") == ["7"]
    # Dates / amounts stay searchable piecewise.
    assert fr.tokens("12/03/2024") == ["12", "03", "2024"]


def test_unicode_nfkc(fr: Analyzer) -> None:
    assert fr.tokens("ﬁnance") == fr.tokens("finance")  # ligature fi
    assert fr.tokens("Ａｒｔｉｃｌｅ １２４０") == fr.tokens("article 1240")  # full width
    assert fr.tokens("") == []
    assert fr.tokens("  \n\t … — !? ") == []


def test_english_stemming(en: Analyzer) -> None:
    run = en.tokens("run")
    assert len(run) == 1
    assert en.tokens("running") == run
    assert en.tokens("runs") == run
    # Snowball English does not handle the irregular past tense.
    assert en.tokens("ran") != run
    assert en.tokens("contracts") == en.tokens("contract")
    assert en.tokens("studies") == en.tokens("study")
    assert en.tokens("company's") == en.tokens("company")
    assert en.tokens("café") == en.tokens("cafe")


def test_english_stop_words(en: Analyzer) -> None:
    assert en.tokens("the of and is are was to in on it don't isn't") == []
    assert en.tokens("The termination of the contracts") == (
        en.tokens("termination") + en.tokens("contract")
    )


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Le contrat est résilié de plein droit en cas de manquement.", "fr"),
        ("Il est responsable du dommage causé à autrui.", "fr"),
        ("Les sociétés commerciales jouissent de la personnalité morale.", "fr"),
        ("L'employeur convoque le salarié à un entretien préalable.", "fr"),
        ("The contract is terminated if either party fails to perform.", "en"),
        ("Whoever causes damage to another must repair it.", "en"),
        ("This Agreement shall be governed by the laws of England.", "en"),
        ("The café is open on Sundays.", "en"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_detect_language_defaults_to_french() -> None:
    assert detect_language("") == "fr"
    assert detect_language("1240 2024") == "fr"
    assert detect_language("Article 1240") == "fr"  # no marker word: tie


def test_encoder_detects_language_per_text() -> None:
    enc = SparseEncoder()
    english = "The running of the contracts"
    assert enc.encode_query(english) == enc.encode_query(english, language="en")
    assert enc.encode_query(english) != enc.encode_query(english, language="fr")
    french = "Les contrats des sociétés"
    assert enc.encode_query(french) == enc.encode_query(french, language="fr")
    # A fixed encoder language wins over detection; the per-call language wins over both.
    enc_en = SparseEncoder(language="en")
    assert enc_en.encode_query(french) == enc.encode_query(french, language="en")
    assert enc_en.encode_query(french, language="fr") == enc.encode_query(french)


# --------------------------------------------------------------------------- term ids


def test_term_id_is_stable() -> None:
    # Hard-coded: blake2b(digest_size=4), big-endian.  Changing the hash breaks
    # every stored index, so this must fail loudly.
    assert term_id("articl") == 2847146822
    assert term_id("1240") == 3014529648
    assert term_id("contrat") == 830423755
    for term in ["articl", "1240", "", "é", "x" * 1000]:
        assert 0 <= term_id(term) < 2**32
    assert term_id("contrat") != term_id("contrats")


# --------------------------------------------------------------------------- encoding


def _value(vec: SparseVector, term: str) -> float:
    return vec.as_dict()[term_id(term)]


def _fillers(n: int) -> str:
    # Distinct, non-stop, unstemmed terms used to control the document length.
    return " ".join(str(1000 + i) for i in range(n))


def test_encode_document_formula() -> None:
    params = Bm25Params(k1=1.2, b=0.75, avg_doc_len=4.0)
    vec = SparseEncoder(params, language="fr").encode_document("contrat contrats 1240 société")
    # 4 terms: contrat x2, 1240 x1, societ x1; doc_len == avg_doc_len -> norm == k1
    assert _value(vec, "contrat") == pytest.approx(2 * 2.2 / (2 + 1.2))
    assert _value(vec, "1240") == pytest.approx(2.2 / (1 + 1.2))
    assert _value(vec, "societ") == pytest.approx(2.2 / (1 + 1.2))
    assert len(vec.indices) == 3


def test_encode_document_saturation() -> None:
    enc = SparseEncoder(Bm25Params(avg_doc_len=10.0), language="fr")
    once = _value(enc.encode_document("contrat " + _fillers(9)), "contrat")  # tf=1, len=10
    ten = _value(enc.encode_document(" ".join(["contrat"] * 10)), "contrat")  # tf=10, len=10
    assert ten > once
    assert ten < 10 * once
    assert ten < 1.2 + 1.0  # bounded by k1 + 1


def test_encode_document_length_normalisation() -> None:
    enc = SparseEncoder(Bm25Params(avg_doc_len=10.0), language="fr")
    short = _value(enc.encode_document("contrat " + _fillers(4)), "contrat")
    long = _value(enc.encode_document("contrat " + _fillers(99)), "contrat")
    assert long < short
    # b = 0 disables length normalisation.
    flat = SparseEncoder(Bm25Params(b=0.0, avg_doc_len=10.0), language="fr")
    assert _value(flat.encode_document("contrat " + _fillers(4)), "contrat") == pytest.approx(
        _value(flat.encode_document("contrat " + _fillers(99)), "contrat")
    )


def test_encode_document_indices_sorted_unique() -> None:
    text = "Les contrats et le contrat des sociétés, article 1240 ; l'article L1234-5. " * 3
    vec = SparseEncoder(language="fr").encode_document(text)
    assert vec.indices == sorted(set(vec.indices))
    assert len(vec.indices) == len(vec.values)
    assert all(v > 0 for v in vec.values)
    expected_terms = {"contrat", "societ", "articl", "1240", "l1234", "1234", "5"}
    assert set(vec.indices) == {term_id(t) for t in expected_terms}


def test_encode_query_unit_values() -> None:
    enc = SparseEncoder(language="fr")
    vec = enc.encode_query("Les contrats, le contrat et la résiliation du CONTRAT")
    (resiliation,) = get_analyzer("fr").tokens("résiliation")
    assert vec.indices == sorted({term_id("contrat"), term_id(resiliation)})
    assert vec.values == [1.0, 1.0]


def test_empty_texts() -> None:
    enc = SparseEncoder(language="fr")
    empty = SparseVector(indices=[], values=[])
    assert enc.encode_document("") == empty
    assert enc.encode_document("le la les de") == empty
    assert enc.encode_query("  ") == empty


def test_params_validation() -> None:
    with pytest.raises(ValueError):
        Bm25Params(b=1.5)
    with pytest.raises(ValueError):
        Bm25Params(avg_doc_len=0)
    with pytest.raises(ValueError):
        SparseVector(indices=[1, 2], values=[1.0])


# --------------------------------------------------------------------------- Qdrant IDF

DOCS = [
    "Le contrat de bail commercial est conclu pour neuf ans.",  # 0
    "Le contrat de travail est suspendu pendant le congé, puis le contrat reprend.",  # 1
    "La résiliation du contrat intervient après mise en demeure.",  # 2
    "Le prêt est garanti par un nantissement du fonds de commerce.",  # 3  rare term
    "Le contrat de vente est parfait dès l'accord sur la chose et le prix.",  # 4
    "La société anonyme est dirigée par un conseil d'administration.",  # 5  singular
]


def _qdrant_search(query: str, *, idf: bool = True) -> list[int]:
    qdrant_client = pytest.importorskip("qdrant_client")
    models = qdrant_client.models

    enc = SparseEncoder(Bm25Params(avg_doc_len=8.0), language="fr")
    client = qdrant_client.QdrantClient(location=":memory:")
    try:
        params = (
            models.SparseVectorParams(modifier=models.Modifier.IDF)
            if idf
            else models.SparseVectorParams()
        )
        client.create_collection("docs", vectors_config={}, sparse_vectors_config={"bm25": params})
        points = []
        for i, text in enumerate(DOCS):
            vec = enc.encode_document(text)
            sparse = models.SparseVector(indices=vec.indices, values=vec.values)
            points.append(models.PointStruct(id=i, vector={"bm25": sparse}, payload={"text": text}))
        client.upsert("docs", points=points)
        q = enc.encode_query(query)
        hits = client.query_points(
            "docs",
            query=models.SparseVector(indices=q.indices, values=q.values),
            using="bm25",
            limit=len(DOCS),
        ).points
        return [int(h.id) for h in hits]
    finally:
        client.close()


def test_qdrant_idf_ranks_rare_term_first() -> None:
    # "contrat" is in 4 docs (twice in doc 1), "nantissement" only in doc 3.
    ranking = _qdrant_search("contrat nantissement")
    assert ranking[0] == 3
    assert sorted(ranking) == [0, 1, 2, 3, 4]  # doc 5 matches neither term


def test_qdrant_without_idf_prefers_repeated_common_term() -> None:
    # Control: the same vectors without the IDF modifier rank by tf saturation
    # only, so the doc repeating the common term wins; IDF is what promotes doc 3.
    ranking = _qdrant_search("contrat nantissement", idf=False)
    assert ranking[0] == 1
    assert ranking.index(1) < ranking.index(3)


def test_qdrant_plural_query_finds_singular_doc() -> None:
    assert _qdrant_search("sociétés anonymes") == [5]
    assert _qdrant_search("les nantissements des prêts") == [3]
    assert _qdrant_search("contrats")[0] == 1
