"""Protocol names as people type them, reduced to one comparable key.

"Curve Finance", "curve" and "CURVE", "OrbitChain" and "Orbit Chain",
"Uniswap V3" and "Uniswap", "The DAO" and "DAO" each reduce to one key. Search, de-duplication
and (next) the risk model compare names only through :func:`name_key` and
:func:`name_similarity`, so they agree on what "the same name" means.

The key: accents folded, camel case and punctuation split into words, lower case, version
markers (v2, V3.1) and a leading "the" dropped, then trailing suffix words that do not tell
protocols apart (Finance, Protocol, Network, Bridge, Chain, DAO, Exchange, Labs, Capital, io,
xyz) dropped while a word remains (a few also when run into the name: "Corkprotocol"), and
the words joined without spaces, so spacing does not matter either ("Sushi Swap" is
"SushiSwap").
"""

import re
import unicodedata
from functools import lru_cache

from rapidfuzz import fuzz

_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_VERSION = re.compile(r"^v\d+$")
SUFFIX_WORDS = frozenset(
    [
        "finance",
        "protocol",
        "network",
        "bridge",
        "chain",
        "dao",
        "exchange",
        "labs",
        "capital",
        "io",
        "xyz",
    ]
)
# Suffixes also dropped when run into the name ("Corkprotocol", "Penpiexyz"): only these, as
# other words end real names ("Blockchain", "Radio").
RUN_TOGETHER_SUFFIXES = ("protocol", "finance", "network", "xyz")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=65536)
def name_words(name: str) -> tuple[str, ...]:
    """The words of a name after splitting and dropping versions, "the" and suffixes."""
    words: list[str] = []
    # "V3.1" splits into "V3" and "1" at the dot; drop the stray minor number with the marker.
    text = re.sub(r"\b[vV]\d+(\.\d+)*\b", " ", _fold(name))
    for raw in _WORD.findall(text):
        parts = _CAMEL.findall(raw) or [raw]
        words.extend(p.lower() for p in parts)
    # A version run into the name ("UniSwapV1") splits into "v" and "1": drop both.
    words = [
        w
        for i, w in enumerate(words)
        if not _VERSION.match(w)
        and not (w == "v" and i + 1 < len(words) and words[i + 1].isdigit())
        and not (w.isdigit() and i > 0 and words[i - 1] == "v")
    ]
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in SUFFIX_WORDS:
        words.pop()
    for suffix in RUN_TOGETHER_SUFFIXES:
        if words and words[-1].endswith(suffix) and len(words[-1]) - len(suffix) >= 3:
            words[-1] = words[-1].removesuffix(suffix)
    return tuple(words)


def name_key(name: str) -> str:
    """The comparable key of a protocol name; empty when the name has no letters or digits."""
    return "".join(name_words(name))


def name_similarity(left: str, right: str) -> float:
    """0-100: how alike two name keys are (100 for equal keys).

    The plain edit ratio, so a missing or swapped letter ("eulr", "uniwsap") scores high
    while names that share only a common part ("curveburner" and "curve") score lower.
    """
    if not left or not right:
        return 0.0
    if left == right:
        return 100.0
    return float(fuzz.ratio(left, right))
