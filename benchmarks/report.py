"""Summaries and tables: medians per implementation, min and max of the repetitions, and
Python/Node ratios (the median, min and max of the per-repetition ratios, each Python run divided
by the Node run of the same repetition)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BASELINE = "node"


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    digits: int = 0


@dataclass(frozen=True)
class Goal:
    """A goal of docs/performance-goals.md, as a ratio (or value) bound."""

    label: str  # the impl whose ratio (or value) is judged, e.g. "py-default/node" or "py-default"
    metric: str
    op: str  # ">=" or "<="
    bound: float
    groups: tuple[str, ...] = ()  # empty: every group


def _stats(values: Sequence[float]) -> dict[str, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """{group: {"impls": {impl: {metric: stats}}, "ratios": {"impl/node": {metric: stats}}}}."""
    out: dict[str, Any] = {}
    groups = list(dict.fromkeys(r["group"] for r in runs))
    for group in groups:
        in_group = [r for r in runs if r["group"] == group]
        impls = list(dict.fromkeys(r["impl"] for r in in_group))
        entry: dict[str, Any] = {"impls": {}, "ratios": {}}
        for impl in impls:
            mine = [r for r in in_group if r["impl"] == impl]
            entry["impls"][impl] = {m: _stats([float(r[m]) for r in mine if m in r]) for m in metrics}
            entry["impls"][impl]["reps"] = len(mine)
        baseline = {r["rep"]: r for r in in_group if r["impl"] == BASELINE}
        for impl in impls:
            if impl == BASELINE or not baseline:
                continue
            ratios: dict[str, list[float]] = {m: [] for m in metrics}
            for r in in_group:
                base = baseline.get(r["rep"])
                if r["impl"] != impl or base is None:
                    continue
                for m in metrics:
                    if m in r and m in base and base[m]:
                        ratios[m].append(float(r[m]) / float(base[m]))
            entry["ratios"][f"{impl}/{BASELINE}"] = {m: _stats(v) for m, v in ratios.items() if v}
        out[group] = entry
    return out


def _cell(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def format_table(title: str, summary: dict[str, Any], columns: Sequence[Column], group_title: str = "") -> str:
    """One row of medians per implementation, a ratio row per Python implementation, and under each
    a `min-max` row when there was more than one repetition."""
    head = [group_title, "impl", *(c.title for c in columns)]
    rows: list[list[str]] = []
    for group, entry in summary.items():
        for impl, stats in entry["impls"].items():
            rows.append([group, impl, *(_cell(stats[c.key]["median"], c.digits) for c in columns)])
            if stats["reps"] > 1:
                rows.append(["", "  min-max", *(
                    "-" if math.isnan(stats[c.key]["min"]) else
                    f"{_cell(stats[c.key]['min'], c.digits)}-{_cell(stats[c.key]['max'], c.digits)}"
                    for c in columns)])
        for label, ratios in entry["ratios"].items():
            rows.append([group, label, *(_ratio(ratios[c.key]["median"]) if c.key in ratios else "-"
                                         for c in columns)])
            if entry["impls"][label.split("/")[0]]["reps"] > 1:
                rows.append(["", "  min-max", *(
                    f"{ratios[c.key]['min']:.2f}-{ratios[c.key]['max']:.2f}x" if c.key in ratios else "-"
                    for c in columns)])
    widths = [max(len(str(x)) for x in col) + 2 for col in zip(head, *rows, strict=True)]
    lines = [title]
    for row in [head, *rows]:
        lines.append("".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip())
    return "\n".join(lines)


def judge(summary: dict[str, Any], goals: Sequence[Goal]) -> list[dict[str, Any]]:
    """Each goal against the median ratio (or the median value, for a label without '/')."""
    verdicts = []
    for goal in goals:
        for group, entry in summary.items():
            if goal.groups and group not in goal.groups:
                continue
            if "/" in goal.label:
                stats = entry["ratios"].get(goal.label, {}).get(goal.metric)
            else:
                stats = entry["impls"].get(goal.label, {}).get(goal.metric)
            if not stats or math.isnan(stats["median"]):
                continue
            value = stats["median"]
            met = value >= goal.bound if goal.op == ">=" else value <= goal.bound
            verdicts.append({"group": group, "label": goal.label, "metric": goal.metric,
                             "value": round(value, 3), "goal": f"{goal.op} {goal.bound}", "met": met})
    return verdicts


def format_verdicts(verdicts: Sequence[dict[str, Any]]) -> str:
    if not verdicts:
        return ""
    return "Goals: " + "; ".join(
        f"{v['group']} {v['label']} {v['metric']} {v['value']:.2f} ({v['goal']}) {'ok' if v['met'] else 'MISSED'}"
        for v in verdicts
    )
