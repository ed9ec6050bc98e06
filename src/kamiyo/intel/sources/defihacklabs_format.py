"""The DeFiHackLabs README format: incident sections and the per-year archives they link.

A section, in the main ``README.md`` and in ``past/<year>/README.md`` alike::

    ### 20241227 Bizness - Reentrancy
    ### Lost: 15.7k USD            (``####`` in older years; ``### Total Lost :`` now and then)
    ```sh
    forge test --contracts ./src/test/2024-12/Bizness_exp.sol -vvv
    ```                            (older: ``forge test --match-contract Bizness_exp -vvv``)
    #### Contract
    [Bizness_exp.sol](../../src/test/2024-12/Bizness_exp.sol)
    ### Link reference             (or ``#### Link reference``; bare URLs or markdown links)
    https://x.com/TenArmorAlert/status/1872857132363645205
    ---                            (the separator; recent sections have none)

A section ends at the next dated heading, a ``---`` line or a level-2 heading. Paths are
given relative to the repository root (``src/test/2024-12/Bizness_exp.sol``) whatever the
README wrote (``../../src/…``, ``/../../src/…``, ``./src/…``).
"""

import datetime as dt
import posixpath
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from kamiyo.intel.sources.base import SourceFormatError

_HEADING = re.compile(r"^###\s+(?P<date>\d{8})(?P<rest>(?:\s|-).*)$")
_LOSS = re.compile(r"^#{2,4}\s*(?:Total\s+)?Lost\b\s*:?\s*(?P<text>.*?)\s*$", re.IGNORECASE)
_END = re.compile(r"^(?:-{3,}\s*$|##\s)")
_FENCE = re.compile(r"^\s*```")
_CONTRACTS = re.compile(r"--contracts\s+(?P<path>\S+)")
_MATCH_CONTRACT = re.compile(r"--match-contract\s+(?P<name>[\w.]+)")
_MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_URL = re.compile(r"https?://[^\s<>()\[\]]+")
_ARCHIVE = re.compile(r"\]\((?P<path>past/\d{4}/README\.md)(?:#[^)]*)?\)")
# Punctuation a sentence puts after a URL, and markdown emphasis around one.
_URL_TAIL = ".,;:!?*'\"`"


@dataclass(frozen=True, slots=True)
class Section:
    """One incident section as the README gives it; nothing derived."""

    document: str  # the README's path in the repository: "README.md", "past/2024/README.md"
    day: dt.date
    protocol: str
    attack: str | None
    loss_text: str | None
    poc_links: tuple[str, ...]  # the ``#### Contract`` links: one PoC file each
    # The files its forge commands name (``--contracts`` paths, ``--match-contract`` names):
    # the same files as the links as a rule, and the fallback where a link is broken.
    poc_commands: tuple[str, ...]
    references: tuple[str, ...]  # every http(s) link in the section, in order, once each


def archive_paths(readme: str) -> list[str]:
    """The per-year archive READMEs (``past/<year>/README.md``) the main README links, once each,
    in the order it links them."""
    return list(dict.fromkeys(m["path"] for m in _ARCHIVE.finditer(readme)))


def parse_readme(text: str, document: str) -> list[Section]:
    """Every incident section of one README, in the order written.

    Raises :class:`SourceFormatError` when the README has no incident section at all: every
    README of the repository lists incidents, so none means the layout changed.
    """
    sections = []
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADING.match(line)]
    for start in starts:
        body = []
        for line in lines[start + 1 :]:
            if _HEADING.match(line) or _END.match(line):
                break
            body.append(line)
        section = _section(lines[start], body, document)
        if section is not None:
            sections.append(section)
    if not sections:
        raise SourceFormatError(
            f"{document}: no incident sections ('### YYYYMMDD Name - Root cause') found"
        )
    return sections


def _section(heading: str, body: list[str], document: str) -> Section | None:
    match = _HEADING.match(heading)
    assert match is not None
    try:
        day = dt.datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        return None
    protocol, attack = _name_and_attack(match["rest"])
    if not protocol:
        return None
    loss_text = None
    commands: list[str] = []
    links: list[str] = []
    references: list[str] = []
    in_code = False
    for line in body:
        if _FENCE.match(line):
            in_code = not in_code
            continue
        if in_code or "forge test" in line:
            commands.extend(_command_paths(line, day))
            continue
        if loss_text is None and (loss := _LOSS.match(line)):
            loss_text = loss["text"] or None
            continue
        for link in _MARKDOWN_LINK.finditer(line):
            target = link["target"]
            relative = not target.startswith(("http://", "https://"))
            if relative and (target.endswith(".sol") or "src/test/" in target):
                links.append(_repository_path(target, document))
        references.extend(url.rstrip(_URL_TAIL) for url in _URL.findall(line))
    return Section(
        document=document,
        day=day,
        protocol=protocol,
        attack=attack,
        loss_text=loss_text,
        poc_links=tuple(dict.fromkeys(links)),
        poc_commands=tuple(dict.fromkeys(commands)),
        references=tuple(dict.fromkeys(references)),
    )


def _name_and_attack(rest: str) -> tuple[str, str | None]:
    rest = rest.strip()
    if " " not in rest and "---" in rest:
        # A slug-shaped heading: "20240924-MARA---price-manipulation".
        name, _, attack = rest.strip("-").partition("---")
        return name.replace("-", " ").strip(), attack.replace("-", " ").strip() or None
    rest = re.sub(r"^-\s+", "", rest)  # "### 20221230 - DFS - Insufficient validation"
    name, sep, attack = rest.partition(" - ")
    return name.strip(), (attack.strip() or None) if sep else None


def _command_paths(line: str, day: dt.date) -> list[str]:
    paths = [_repository_path(m["path"], "README.md") for m in _CONTRACTS.finditer(line)]
    for m in _MATCH_CONTRACT.finditer(line):
        # "--match-contract RadiantCapital_exp" names a contract; by the repository's
        # convention it lives in src/test/<yyyy-mm>/<name>.sol of the incident's month.
        paths.append(f"src/test/{day:%Y-%m}/{m['name']}.sol")
    return paths


def _repository_path(target: str, document: str) -> str:
    target = target.split("#", 1)[0]
    if "src/test/" in target:
        return posixpath.normpath("src/test/" + target.split("src/test/", 1)[1])
    return posixpath.normpath(posixpath.join(posixpath.dirname(document), target))


def poc_candidates(section: Section) -> list[list[str]]:
    """The PoC files of ``section``, each as the paths to try in turn.

    A link is tried as written, then as the file the repository's naming suggests when the
    link is broken: ``X`` -> ``X_exp.sol``, ``X.sol`` -> ``X.sol_exp.sol`` (both occur), a
    file filed at ``src/test/`` instead of its month folder; then the forge commands' paths.
    A section with no link has one PoC, found from its commands.
    """
    fallbacks = [p for c in section.poc_commands for p in _variants(c)]
    if not section.poc_links:
        return [list(dict.fromkeys(fallbacks))] if fallbacks else []
    return [list(dict.fromkeys([*_variants(link), *fallbacks])) for link in section.poc_links]


def _variants(path: str) -> list[str]:
    variants = [path]
    if path.endswith(".sol") and not path.endswith("_exp.sol"):
        variants += [path[:-4] + "_exp.sol", path + "_exp.sol"]
    elif not path.endswith(".sol"):
        variants.append(path + "_exp.sol")
    variants.append("src/test/" + posixpath.basename(path))
    return list(dict.fromkeys(variants))


def slug(protocol: str) -> str:
    """The id slug of a protocol name: lower case, every run of other characters one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", protocol.lower()).strip("-")


def source_ids(sections: Iterable[Section]) -> list[str]:
    """The bundled dataset's incident ids, ``yyyymmdd_slug``, in the order of ``sections``.

    A second section with the same day and slug gets ``_2``, a third ``_3`` and so on, in the
    order the READMEs list them (main README first, then the archives newest year first).
    """
    counts: Counter[str] = Counter()
    ids = []
    for section in sections:
        base = f"{section.day:%Y%m%d}_{slug(section.protocol)}"
        counts[base] += 1
        ids.append(base if counts[base] == 1 else f"{base}_{counts[base]}")
    return ids
