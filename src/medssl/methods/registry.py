"""Methods register themselves by name so that configs and the CLI can name them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medssl.methods.base import SSLMethod

METHODS: dict[str, type[SSLMethod]] = {}


def register(cls: type[SSLMethod]) -> type[SSLMethod]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[SSLMethod]:
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]
