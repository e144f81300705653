"""Self-supervised methods: one Lightning module per file on the shared ``SSLMethod`` base."""

from medssl.methods import barlow_twins, byol, moco, nnclr, rotation, simclr, simsiam, vicreg  # noqa: F401  (importing registers them)
from medssl.methods.registry import METHODS, default_config, get_method

__all__ = ["METHODS", "default_config", "get_method"]
