"""The skip report: every input that could not be used, with the reason, so nothing is lost silently."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path


class SkippedInputError(RuntimeError):
    """Raised under ``--strict`` when any input was skipped."""


@dataclass
class SkipReport:
    entries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str | Path, reason: str) -> None:
        self.entries.append((str(path), reason))

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, out_dir: str | Path) -> Path:
        """Writes ``skipped.csv`` (path, reason) next to the run's other outputs, even when empty."""
        target = Path(out_dir) / "skipped.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(self.entries)
        return target

    def summary(self, limit: int = 5) -> str:
        if not self.entries:
            return "no inputs skipped"
        lines = [f"{len(self.entries)} input(s) skipped:"]
        lines += [f"  {path}: {reason}" for path, reason in self.entries[:limit]]
        if len(self.entries) > limit:
            lines.append(f"  ... and {len(self.entries) - limit} more (see skipped.csv)")
        return "\n".join(lines)

    def check(self, strict: bool) -> None:
        if strict and self.entries:
            raise SkippedInputError(f"--strict: {self.summary()}")
