"""Methods register themselves by name so that configs and the CLI can name them."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import yaml

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


def default_config(name: str) -> dict:
    """The method's YAML config shipped in medssl/configs/<name>.yaml."""
    get_method(name)
    text = resources.files("medssl.configs").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)
