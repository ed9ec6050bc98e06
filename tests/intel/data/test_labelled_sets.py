"""The labelled sets are what they claim: real reports, the stated counts, reasons where needed."""

import csv
from pathlib import Path

from kamiyo.intel.vocabulary import AttackType
from tests.intel.data import build_pairs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _rows(name: str) -> list[dict[str, str]]:
    with (HERE / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _ids(path: Path, column: str) -> set[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row[column] for row in csv.DictReader(handle)}


def test_the_pairs_name_real_reports_once_each() -> None:
    known = {
        "defihacklabs": _ids(
            REPO / "data" / "defihacklabs" / "defihacklabs_incidents.csv", "incident_id"
        ),
        "notable": _ids(REPO / "data" / "notable" / "notable_incidents.csv", "incident_key"),
    }
    rows = _rows("resolution_pairs.csv")
    seen = set()
    for row in rows:
        left, right = (row["left_source"], row["left_id"]), (row["right_source"], row["right_id"])
        assert left[1] in known[left[0]], row
        assert right[1] in known[right[0]], row
        assert left != right
        key = frozenset({left, right})
        assert key not in seen, row
        seen.add(key)
        assert row["same"] in ("0", "1")
        assert row["hard"] in ("0", "1")
        assert row["reason"].strip().endswith("."), row  # every row says why, hard rows above all


def test_the_pairs_have_the_promised_shape() -> None:
    rows = _rows("resolution_pairs.csv")
    same = [r for r in rows if r["same"] == "1"]
    different = [r for r in rows if r["same"] == "0"]
    assert len(rows) >= 300
    assert len(same) >= 54
    assert sum(r["hard"] == "1" for r in different) * 2 >= len(different)
    assert any(r["hard"] == "0" for r in different)  # not all hard cases
    sources = {(r["left_source"], r["right_source"]) for r in rows}
    assert {("notable", "defihacklabs"), ("defihacklabs", "defihacklabs")} <= sources


def test_every_checked_pairing_of_the_notable_table_is_a_positive() -> None:
    positives = {
        (r["left_id"], r["right_id"])
        for r in _rows("resolution_pairs.csv")
        if r["same"] == "1" and r["left_source"] == "notable"
    }
    pairing = {
        (r["incident_key"], r["incident_id"]) for r in _rows("notable_defihacklabs_pairs.csv")
    }
    assert len(pairing) == 53
    assert pairing <= positives


def test_the_pairs_file_is_what_the_builder_writes() -> None:
    built = [
        [p.left.source, p.left.id, p.right.source, p.right.id, str(int(p.same)), str(int(p.hard))]
        for p in build_pairs.build()
    ]
    written = [
        [r["left_source"], r["left_id"], r["right_source"], r["right_id"], r["same"], r["hard"]]
        for r in _rows("resolution_pairs.csv")
    ]
    assert built == written


def test_the_attack_labels_use_the_vocabulary() -> None:
    rows = _rows("attack_labels.csv")
    assert len(rows) >= 200
    assert {r["expected"] for r in rows} <= {k.value for k in AttackType}
    assert len({(r["source"], r["raw"]) for r in rows}) == len(rows)
