"""The skip report: every input that could not be used, with the reason, so nothing is lost
silently; and every input used only after a correction (a series regridded), with what was done."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path


class ManifestError(ValueError):
    """A manifest that cannot be used at all; raised before any training starts."""


class SkippedInputError(RuntimeError):
    """Raised under ``--strict`` when any input was skipped."""


@dataclass
class SkipReport:
    entries: list[tuple[str, str]] = field(default_factory=list)
    corrected: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str | Path, reason: str) -> None:
        self.entries.append((str(path), reason))

    def correct(self, path: str | Path, what: str) -> None:
        self.corrected.append((str(path), what))

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, out_dir: str | Path) -> Path:
        """Writes ``skipped.csv`` (path, reason) next to the run's other outputs, even when empty,
        and ``corrected.csv`` (path, correction) when an input was corrected."""
        target = Path(out_dir) / "skipped.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        for name, header, rows in (
            ("skipped.csv", "reason", self.entries),
            ("corrected.csv", "correction", self.corrected),
        ):
            if rows or name == "skipped.csv":
                with (target.parent / name).open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["path", header])
                    writer.writerows(rows)
        return target

    def summary(self, limit: int = 5) -> str:
        corrected = f"; {len(self.corrected)} read after a correction (see corrected.csv)" if self.corrected else ""
        if not self.entries:
            return "no inputs skipped" + corrected
        lines = [f"{len(self.entries)} input(s) skipped:"]
        lines += [f"  {path}: {reason}" for path, reason in self.entries[:limit]]
        if len(self.entries) > limit:
            lines.append(f"  ... and {len(self.entries) - limit} more (see skipped.csv)")
        return "\n".join(lines) + corrected

    def check(self, strict: bool) -> None:
        if strict and self.entries:
            raise SkippedInputError(f"--strict: {self.summary()}")
