"""A run's ``.log``, as plink2 writes one: the command line, the versions, what was read and
dropped, each stage's time. Lines are written as the run goes, so a failed run's log says how far
it got and why it stopped."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
LIBRARIES = ("medssl", "numpy", "scipy", "pyarrow", "bed-reader")


class RunLog:
    def __init__(self, path: Path, command: str | None = None) -> None:
        self.path, self.command = path, command
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> RunLog:
        self._file = self.path.open("w")
        versions = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
        self.line(f"{versions}; Python {platform.python_version()} on {platform.machine()}")
        self.line(f"start: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        self.line(f"command: {self.command or ' '.join(sys.argv)}")
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            self.line(f"error: {error}")
        self.line(f"end: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        self._file.close()

    def line(self, text: str) -> None:
        self._file.write(text + "\n")
        self._file.flush()

    def counts(self, title: str, counts: Mapping[str, int], unit: str = "") -> None:
        if counts:
            self.line(
                f"{title}: " + ", ".join(f"{count} {name}" for name, count in counts.items()) + f" {unit}".rstrip()
            )

    def timed(self, stage: str, run: Callable[..., T], *args) -> T:
        """``run(*args)``, its wall time logged and kept in ``seconds``."""
        start = time.perf_counter()
        result = run(*args)
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        self.line(f"{stage}: {self.seconds[stage]:.1f} s")
        return result


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"
