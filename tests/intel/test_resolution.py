"""Entity resolution measured on the labelled pairs of real reports (tests/intel/data).

The bundle is loaded as a user gets it (DeFiHackLabs, then the notable table) and each pair
is judged by where its two reports ended up: one incident or two. Precision and recall must
both reach 0.95; the figures and every mistake are printed (``pytest -s`` shows them).
"""

import csv
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import SourceReportRow

pytestmark = pytest.mark.anyio

PAIRS = Path(__file__).parent / "data" / "resolution_pairs.csv"
FLOOR = 0.95


async def test_precision_and_recall_on_the_labelled_pairs(session: AsyncSession) -> None:
    incident_of = {
        (source, source_id): pk
        for source, source_id, pk in await session.execute(
            select(SourceReportRow.source, SourceReportRow.source_id, SourceReportRow.incident_pk)
        )
    }
    with PAIRS.open(encoding="utf-8", newline="") as handle:
        pairs = list(csv.DictReader(handle))
    assert len(pairs) >= 300
    tp = fp = fn = tn = 0
    mistakes = []
    for pair in pairs:
        left = incident_of[(pair["left_source"], pair["left_id"])]
        right = incident_of[(pair["right_source"], pair["right_id"])]
        merged, same = left == right, pair["same"] == "1"
        tp += merged and same
        fp += merged and not same
        fn += same and not merged
        tn += not merged and not same
        if merged != same:
            mistakes.append(
                f"{'merged' if merged else 'apart'}: {pair['left_id']} / "
                f"{pair['right_id']}: {pair['reason'][:100]}"
            )
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(
        f"\nresolution on {len(pairs)} labelled pairs: precision {precision:.3f}, "
        f"recall {recall:.3f} (tp {tp}, fp {fp}, fn {fn}, tn {tn})",
        *mistakes,
        sep="\n  ",
    )
    assert precision >= FLOOR, mistakes
    assert recall >= FLOOR, mistakes
