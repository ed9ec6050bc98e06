"""Search text normalisation shared by indexing and querying.

Both backends index the same pre-normalised terms (SQLite FTS5 with the plain ``unicode61``
tokenizer, PostgreSQL ``to_tsvector('simple', ...)``), so a query matches the same incidents on
either database. Stemming, diacritic folding, camel-case splitting and compound splitting happen
here, in Python, once.

Protocol names are not English: they are indexed unstemmed (:func:`name_terms`), so "axie" is
not cut to "axi" and does not find "Axioma"; attack wording and descriptions are stemmed
(:func:`index_terms`). A query keeps its words unstemmed (:func:`query_terms`) and the search
matches each word against names as typed and against the other fields as :func:`stem` makes it.
"""

import re
import unicodedata
from functools import lru_cache

from snowballstemmer.english_stemmer import EnglishStemmer

_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z0-9]+")
# Words too common to narrow a search; dropped from the index and from queries alike.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "via",
        "was",
        "with",
    ]
)
# Spellings the data uses for one idea; both the index and queries see the split form.
_COMPOUNDS = {
    "flashloan": ("flash", "loan"),
    "flashloans": ("flash", "loans"),
    "accesscontrol": ("access", "control"),
    "frontrun": ("front", "run"),
    "frontrunning": ("front", "running"),
    "readonly": ("read", "only"),
}
_stemmer = EnglishStemmer()

MAX_QUERY_TERMS = 12


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The English stem of one lower-case query or index word."""
    return str(_stemmer.stemWord(word))


def _words(text: str, *, split_camel: bool) -> list[str]:
    words: list[str] = []
    for raw in _WORD.findall(_fold(text)):
        lower = raw.lower()
        if lower in _STOPWORDS:
            continue
        words.extend(_COMPOUNDS.get(lower, (lower,)))
        if split_camel:
            parts = [p.lower() for p in _CAMEL.findall(raw)]
            if len(parts) > 1:
                words.extend(parts)
    return words


def index_terms(text: str | None) -> str:
    """The space-separated, stemmed terms stored in the full-text index for prose ``text``."""
    if not text:
        return ""
    return " ".join(stem(w) for w in _words(text, split_camel=False))


def name_terms(text: str | None) -> str:
    """The space-separated terms stored for protocol names: unstemmed, camel case indexed as
    the whole word and its parts ("EulerFinance": eulerfinance euler finance)."""
    if not text:
        return ""
    return " ".join(_words(text, split_camel=True))


def query_terms(text: str) -> list[str]:
    """Distinct words of a user query, in order, folded and lower-cased but not stemmed (the
    search stems them where it matches stemmed fields); empty when it holds no word at all."""
    return list(dict.fromkeys(_words(text, split_camel=False)))[:MAX_QUERY_TERMS]
