from kamiyo.intel.text import MAX_QUERY_TERMS, index_terms, query_terms


def test_index_terms_stem_fold_and_split() -> None:
    assert index_terms("Flashloan & Price Oracle Manipulation") == (
        "flash loan price oracl manipul"
    )
    assert index_terms("Ünïcödé Café") == "unicod cafe"
    assert index_terms("") == ""
    assert index_terms(None) == ""


def test_camel_case_names_index_the_whole_and_the_parts() -> None:
    assert index_terms("EulerFinance", split_camel=True).split() == ["eulerfin", "euler", "financ"]
    assert index_terms("USDTStaking", split_camel=True).split() == [
        "usdtstak",
        "usdt",
        "stake",
    ]
    # Version suffixes and hex stay whole.
    assert index_terms("v2 0xabc", split_camel=True) == "v2 0xabc"


def test_query_terms_drop_syntax_stopwords_and_repeats() -> None:
    assert query_terms('the "flash loans" OR NEAR( 🚀 \x00 exploits') == [
        "flash",
        "loan",
        "near",
        "exploit",
    ]
    assert query_terms("euler euler EULER") == ["euler"]
    assert query_terms("*()\"'\x00🚀") == []


def test_query_terms_are_capped() -> None:
    words = " ".join(f"word{i}" for i in range(50))
    assert len(query_terms(words)) == MAX_QUERY_TERMS


def test_terms_hold_only_letters_and_digits() -> None:
    hostile = "a'b\"c*d(e)f:g&h|i!j-k_l%m\\n\x00o NEAR/3 p"
    for term in query_terms(hostile):
        assert term.isalnum(), term
