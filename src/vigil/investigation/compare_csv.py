"""A comparison's result as CSV: identity pairs or template pairs, best first, safe to open in a
spreadsheet (text that would run as a formula gets a leading apostrophe)."""

from __future__ import annotations

import csv
import io
from typing import Literal

from vigil.investigation.compare import CompareResult, IdentityPair, PairHit

CSV_COLUMNS = (
    "score",
    "threshold",
    "gallery_a",
    "identity_a_id",
    "identity_a",
    "template_a",
    "gallery_b",
    "identity_b_id",
    "identity_b",
    "template_b",
)


def _cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(result: CompareResult, level: Literal["identities", "pairs"] = "identities") -> str:
    """The identity pairs (with ``template_pairs``) or the template pairs, best first, as CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    rows: list[PairHit] = list(result.identities) if level == "identities" else list(result.pairs)
    writer.writerow([*CSV_COLUMNS, "template_pairs"] if level == "identities" else CSV_COLUMNS)
    for p in rows:
        row = [
            p.score,
            result.threshold,
            result.gallery_a,
            p.identity_a_id,
            p.identity_a,
            p.template_a,
            result.gallery_b,
            p.identity_b_id,
            p.identity_b,
            p.template_b,
        ]
        if isinstance(p, IdentityPair):
            row.append(p.template_pairs)
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()
