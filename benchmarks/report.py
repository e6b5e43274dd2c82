"""Turn a pytest-benchmark JSON file into a table of medians and ratios, and a PNG chart.

    python3 benchmarks/report.py results.json [--png benchmarks/spawn.png] [--md out.md]

Within each benchmark group, every row is compared with the group's first
"floor" row (the C floor) if there is one, else with the fastest row.  Rows measured
*paired* (each round right after a timed round of a reference, see bench_spawn.py) also
show that ratio, which the machine's drift between tests does not skew: it is the one
to read.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

EXTRA: dict[str, dict[str, Any]] = {}  # benchmark name -> its extra_info


def rows_by_group(data: dict[str, Any]) -> dict[str, list[tuple[str, float]]]:
    groups: dict[str, list[tuple[str, float]]] = {}
    for bench in data["benchmarks"]:
        name = bench["name"].removeprefix("test_")
        EXTRA[name] = bench.get("extra_info") or {}
        groups.setdefault(bench["group"] or "", []).append((name, bench["stats"]["median"]))
    for rows in groups.values():
        rows.sort(key=lambda row: row[1])
    return groups


def baseline(rows: list[tuple[str, float]]) -> tuple[str, float]:
    return next((row for row in rows if row[0].startswith(("floor", "baseline"))), rows[0])


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1e6:,.0f} µs"


def _note(name: str, median: float) -> str:
    extra = EXTRA.get(name, {})
    notes = []
    if "megabytes" in extra:
        notes.append(f"{extra['megabytes'] / median:,.0f} MB/s")
    if "peak_rss_mb" in extra:
        notes.append(f"peak RSS {extra['peak_rss_mb']:,.0f} MB")
    return ", ".join(notes)


def _paired(name: str) -> str:
    extra = EXTRA.get(name, {})
    if "paired_ratio" not in extra:
        return ""
    ratio = extra["paired_ratio"]
    text = f"{ratio:.2f} x {extra['reference']} ({_time(extra['reference_median'])})"
    return text + (f" = 1/{1 / ratio:.1f}" if ratio < 1 else "")


def table(groups: dict[str, list[tuple[str, float]]]) -> str:
    lines = ["| group | benchmark | median | ratio to baseline | paired ratio | |",
             "|---|---|---:|---:|---:|---|"]
    for group, rows in groups.items():
        base_name, base = baseline(rows)
        for name, median in rows:
            mark = " (baseline)" if name == base_name else ""
            lines.append(f"| {group} | {name}{mark} | {_time(median)} | "
                         f"{median / base:.2f} | {_paired(name)} | {_note(name, median)} |")
    return "\n".join(lines)


def chart(groups: dict[str, list[tuple[str, float]]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(groups)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.2 + 0.5 * sum(len(r) for r in groups.values())),
                             squeeze=False)
    for ax, (group, rows) in zip(axes[:, 0], groups.items(), strict=True):
        names = [name for name, _ in rows]
        values = [median * 1e6 for _, median in rows]
        colors = ["tab:orange" if name.startswith("nsbind") else
                  "tab:gray" if name.startswith("floor") else "tab:blue" for name in names]
        ax.barh(names, values, color=colors)
        ax.set_xlim(0, max(values) * 1.3)
        ax.invert_yaxis()
        ax.set_title(group, fontsize=10, loc="left")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f} µs", va="center", fontsize=8)
    axes[-1, 0].set_xlabel("median per call (µs) — lower is better; orange: nsbind, grey: C floor")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json", type=pathlib.Path)
    parser.add_argument("--png", type=pathlib.Path)
    parser.add_argument("--md", type=pathlib.Path)
    args = parser.parse_args()
    groups = rows_by_group(json.loads(args.json.read_text()))
    text = table(groups)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    if args.png:
        chart(groups, args.png)


if __name__ == "__main__":
    main()
