"""Self-supervised methods: one Lightning module per file on the shared ``SSLMethod`` base.

Every module in this package is imported here, and a method registers itself with ``@register``:
a new method is one new file (plus a YAML in ``medssl/configs`` of what differs from the defaults).
"""

import importlib
import pkgutil

from medssl.methods.registry import METHODS, get_method

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "get_method"]
