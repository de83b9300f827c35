#!/usr/bin/env python3
"""Every goal of BENCHMARKS.md in one table, at its top: scripts/bench's last step. Reads the
report the run wrote, collects each row of every table whose last cell says met or missed (each
section's own goals table), and puts them under `## Every goal at a glance`, after the report's
opening lines, replacing that section if the report already has one. Standard library only.

Usage: bench/summary.py REPORT.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TITLE = "## Every goal at a glance"
VERDICTS = {"met": "met", "missed": "**missed**"}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def goals(text: str) -> list[tuple[str, str, str, str]]:
    """(section, what, figures, verdict) for each goal row, in the report's order."""
    found, section, header = [], "", []
    for line in text.splitlines():
        if line.startswith("## ") and line.strip() != TITLE:
            section, header = line[3:].strip(), []
            continue
        if line.startswith("### ") and section:
            section = section.split(" › ")[0] + " › " + line[4:].strip()
            continue
        if not line.startswith("|"):
            header = []
            continue
        row = cells(line)
        if not header:
            header = row
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in row if c):
            continue
        verdict = row[-1].strip("*").strip()
        if verdict not in VERDICTS or len(row) < 3:
            continue
        names = header + [""] * (len(row) - len(header))
        figures = "; ".join(f"{n}: {c}" if n else c
                            for n, c in zip(names[1:-1], row[1:-1]) if c and c != "–")
        found.append((section, row[0], figures, VERDICTS[verdict]))
    return found


def render(found: list[tuple[str, str, str, str]]) -> str:
    met = sum(1 for *_, v in found if v == "met")
    lines = [TITLE, "",
             f"{met} of {len(found)} goals met. Each row is copied from its section's goals table "
             "below, where the figures, peers and the way they were measured are given.", "",
             "| section | goal | figures | |", "| --- | --- | --- | --- |"]
    lines += [f"| {s} | {w} | {f} | {v} |" for s, w, f, v in found]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[-1].strip(), file=sys.stderr)
        return 2
    path = Path(sys.argv[1])
    text = path.read_text()
    # Drop an earlier summary, then put the new one before the first section.
    text = re.sub(rf"^{re.escape(TITLE)}\n.*?(?=^## )", "", text, flags=re.S | re.M)
    found = goals(text)
    if not found:
        print(f"bench/summary: no goals table in {path}", file=sys.stderr)
        return 1
    first = re.search(r"^## ", text, re.M)
    at = first.start() if first else len(text)
    path.write_text(text[:at] + render(found) + "\n" + text[at:])
    print(f"bench/summary: {len(found)} goals in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
