"""The results: one Row per line of issue 12's table, printed as Markdown next to the issue's
figures and targets, with a verdict that states the numbers behind it; and the JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import targets


@dataclass
class Row:
    key: str  # "a" .. "k", the line of the issue's table
    typical: str
    pgactivity: str
    met: bool | None  # None: no target, or not measurable in this run
    why: str  # the comparison behind the verdict, with its numbers
    conditions: str = ""
    details: list[str] = field(default_factory=list)  # extra lines printed under the table
    numbers: dict[str, Any] = field(default_factory=dict)  # everything measured, for --json
    load: str = ""  # 1-minute load average before -> after

    @property
    def verdict(self) -> str:
        if self.met is None:
            return f"- {self.why}".strip()
        return f"{'met' if self.met else '**missed**'}: {self.why}"


def ms(value: float) -> str:
    if value != value:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def per_s(value: float) -> str:
    if value != value:
        return "-"
    return f"{value / 1000:.1f}k/s" if value >= 10_000 else f"{value:,.0f}/s"


def count(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def print_table(rows: Sequence[Row]) -> None:
    print("| row | measure | typical app | pgactivity | issue: typical app | issue: pgactivity | target | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: r.key):
        measure, issue_typical, issue_ours, target = targets.ROWS[row.key]
        cells = (row.key, measure, row.typical, row.pgactivity, issue_typical, issue_ours, target, row.verdict)
        print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")


def print_details(rows: Sequence[Row]) -> None:
    for row in sorted(rows, key=lambda r: r.key):
        print(f"\n({row.key}) {targets.ROWS[row.key][0]}")
        if row.conditions:
            print(f"    conditions: {row.conditions}")
        if row.load:
            print(f"    load average (1 min): {row.load}")
        for line in row.details:
            print(f"    {line}")


def simple_table(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """A small aligned table as lines of text (for a row's details)."""
    cells = [[_cell(r.get(c, "")) for c in columns] for r in records]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)] if cells else []
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def save(path: str | None, info: dict[str, Any], rows: Sequence[Row]) -> None:
    if not path:
        return
    data = {**info, "rows": [asdict(r) | {"verdict": r.verdict} for r in sorted(rows, key=lambda r: r.key)]}
    Path(path).write_text(json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")
