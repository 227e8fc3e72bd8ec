"""What a scenario hands back to benchmarks/run.py: its table, summary, goal verdicts and runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    name: str
    table: str
    summary: dict[str, Any]
    runs: list[dict[str, Any]]
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that did not do all their work

    def as_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "goals": self.verdicts, "notes": self.notes,
                "failures": self.failures, "runs": self.runs}


def say(line: str) -> None:
    print(line, flush=True)
