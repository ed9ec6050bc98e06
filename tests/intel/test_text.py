from kamiyo.intel.text import MAX_QUERY_TERMS, index_terms, name_terms, query_terms, stem


def test_index_terms_stem_fold_and_split() -> None:
    assert index_terms("Flashloan & Price Oracle Manipulation") == (
        "flash loan price oracl manipul"
    )
    assert index_terms("Ünïcödé Café") == "unicod cafe"
    assert index_terms("") == ""
    assert index_terms(None) == ""


def test_names_index_the_whole_camel_case_word_and_its_parts_unstemmed() -> None:
    assert name_terms("EulerFinance").split() == ["eulerfinance", "euler", "finance"]
    assert name_terms("USDTStaking").split() == ["usdtstaking", "usdt", "staking"]
    assert name_terms("Axie Infinity") == "axie infinity"  # not "axi infin"
    assert name_terms("Ünïcödé") == "unicode"
    # Version suffixes and hex stay whole.
    assert name_terms("v2 0xabc") == "v2 0xabc"
    assert name_terms(None) == ""


def test_query_terms_drop_syntax_stopwords_and_repeats_but_keep_words_whole() -> None:
    assert query_terms('the "flash loans" OR NEAR( 🚀 \x00 exploits') == [
        "flash",
        "loans",
        "near",
        "exploits",
    ]
    assert query_terms("euler euler EULER") == ["euler"]
    assert query_terms("Flashloan") == ["flash", "loan"]
    assert query_terms("*()\"'\x00🚀") == []


def test_stems_are_what_prose_is_indexed_by() -> None:
    assert [stem(w) for w in query_terms("flash loans exploits")] == index_terms(
        "Flash loan exploit"
    ).split()


def test_query_terms_are_capped() -> None:
    words = " ".join(f"word{i}" for i in range(50))
    assert len(query_terms(words)) == MAX_QUERY_TERMS


def test_terms_hold_only_letters_and_digits() -> None:
    hostile = "a'b\"c*d(e)f:g&h|i!j-k_l%m\\n\x00o NEAR/3 p"
    for term in query_terms(hostile):
        assert term.isalnum(), term
        assert stem(term).isalnum(), term
