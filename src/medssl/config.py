"""One home for every pretraining setting: a dataclass per section holds the defaults, a method's
YAML (``medssl/configs/<method>.yaml``) only what differs for it, and a user's config, ``--set``
and the command-line flags override on top, in that order.

Sections: ``encoder`` (``EncoderConfig``), ``views`` (``ViewConfig``, or a preset of
``VIEW_PRESETS`` by name), ``optimizer`` (``OptimizerConfig``), ``training`` (``TrainingConfig``),
``method_args`` (the method's keyword arguments and their defaults) and ``data`` (preprocessing).
This module imports no torch, so that ``--help`` can show the defaults at once.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, asdict, dataclass, fields
from importlib import resources
from types import UnionType
from typing import Any, get_args, get_type_hints

import yaml

from medssl.models.specs import EncoderConfig
from medssl.models.specs import setting as _setting


@dataclass(frozen=True)
class ViewConfig:
    crop_scale: tuple[float, float] = (0.3, 1.0)  # fraction of the image's area/volume kept
    aspect_jitter: float = 0.25  # log-uniform per-axis stretch around the crop's side
    flip_prob: float = 0.5  # per axis
    brightness: float = 0.3  # additive, uniform in [-b, b]
    contrast: float = 0.3  # multiplicative around the mean, uniform in [1 - c, 1 + c]
    noise_prob: float = 0.5
    noise_std: float = 0.05
    blur_prob: float = 0.3
    blur_sigma: float = 1.0  # voxels


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with a linear warm-up, then cosine decay to zero over the planned steps or time."""

    lr: float = _setting(1e-3, "learning rate")
    weight_decay: float = _setting(1e-5, "AdamW's weight decay")
    warmup_steps: int = _setting(100, "steps of linear warm-up")


@dataclass(frozen=True)
class TrainingConfig:
    """How pretraining runs: Lightning's Trainer and DataLoader settings under their own names."""

    batch_size: int = _setting(256, "images per step and process")
    max_epochs: int = _setting(50, "passes over the training images", on_resume=True)
    max_steps: int = _setting(-1, "stop after this many optimiser steps (-1: no limit)", on_resume=True)
    max_minutes: float | None = _setting(None, "stop after this wall time", on_resume=True)
    precision: str = _setting("auto", "auto (bf16-mixed where the GPU or CPU computes bf16, else 32), bf16-mixed, 32")
    gradient_clip: float | None = _setting(None, "clip the gradient norm to this value (a loss that turns non-finite)")
    checkpoint_every: int = _setting(200, "steps between checkpoints", on_resume=True)
    log_every: int = _setting(10, "steps between logged losses", on_resume=True)
    samples_per_subject: int = _setting(1, "views drawn per subject and epoch (for few large volumes)")
    num_workers: int = _setting(0, "data-loading worker processes", on_resume=True)
    accelerator: str = _setting("auto", "auto, cpu or gpu", on_resume=True)
    devices: str = _setting("auto", "auto, or a count (DDP across GPUs)", on_resume=True)
    num_nodes: int = _setting(1, "machines (DDP)", on_resume=True)
    strategy: str = _setting("auto", "Lightning strategy: auto, ddp, ...", on_resume=True)
    sync_batchnorm: bool = _setting(False, "BatchNorm statistics over all GPUs' batches (DDP)")
    accumulate_grad_batches: int = _setting(1, "step the optimiser every N batches (a larger effective batch)")
    compile: bool = _setting(False, "torch.compile the encoder (GPU; the first steps compile)", on_resume=True)
    shuffle_buffer: int = _setting(1000, "samples a streamed shard cache shuffles among")
    monitor_every: int = _setting(
        0,
        "every N epochs, score the encoder on the labelled validation split (0: off); encoder_best.pt keeps the best",
        on_resume=True,
    )
    monitor_patience: int = _setting(
        0, "stop after this many monitor checks without a better score (0: never)", on_resume=True
    )
    monitor_score: str = _setting(
        "knn_auc", "what ranks the monitor's checks: knn_auc, or linear_auc (5-fold logistic regression)"
    )
    progress: str = _setting(
        "auto", "auto (a bar on a terminal, a line per epoch in a log file), bar, lines or none", on_resume=True
    )


# views a method's YAML names instead of listing them (``views: geometric``), as solo-learn's YAMLs
# compose shared augmentation files; a dict with ``preset:`` takes one and changes some settings
VIEW_PRESETS: dict[str, dict] = {
    # crops and flips only: for shape masks, and for methods whose corruption is the augmentation
    "geometric": {"brightness": 0.0, "contrast": 0.0, "noise_prob": 0.0, "blur_prob": 0.0},
    # no flips: the pretext label is where or which way a patch lies
    "layout_kept": {
        "crop_scale": [0.5, 1.0],
        "flip_prob": 0.0,
        "brightness": 0.2,
        "contrast": 0.2,
        "noise_std": 0.03,
        "blur_prob": 0.2,
    },
    # near-identity views for a model that reconstructs its input
    "reconstruction": {
        "crop_scale": [0.8, 1.0],
        "flip_prob": 0.0,
        "brightness": 0.1,
        "contrast": 0.1,
        "noise_prob": 0.0,
        "blur_prob": 0.0,
    },
}


def sections() -> dict[str, type]:
    """The dataclass of each section with fixed fields."""
    return {"encoder": EncoderConfig, "views": ViewConfig, "optimizer": OptimizerConfig, "training": TrainingConfig}


DATA_FROM_INPUT = {"spatial_dims", "in_channels", "image_size"}  # encoder fields the data sets


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def section_defaults(section: str) -> dict:
    defaults = {k: _plain(v) for k, v in asdict(sections()[section]()).items()}
    return {k: v for k, v in defaults.items() if k not in DATA_FROM_INPUT}


def method_defaults(method_cls: type) -> dict:
    """The keyword arguments a method accepts with their defaults, its parents' included (a VAE
    takes an autoencoder's); a child's default wins. An argument without a default is no setting:
    a child passes it to its parent (MoCo's projector depth) or the data sets it (``SSLMethod.pair``)."""
    from medssl.methods.base import SSLMethod

    defaults: dict = {}
    for cls in reversed(method_cls.__mro__):
        if issubclass(cls, SSLMethod) and cls is not SSLMethod and "__init__" in vars(cls):
            for name, p in inspect.signature(cls.__init__).parameters.items():
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty:
                    defaults[name] = _plain(p.default)
    return defaults


def default_config(method: str) -> dict:
    """Every setting of ``method`` as it trains by default: the code's defaults updated by its YAML."""
    from medssl.data.preprocess import Preprocessing
    from medssl.methods import get_method

    method_cls = get_method(method)
    shipped = yaml.safe_load(resources.files("medssl.configs").joinpath(f"{method}.yaml").read_text()) or {}
    shipped["views"] = expand_views(shipped.get("views"))
    base = {section: section_defaults(section) for section in sections()}
    base["method_args"] = method_defaults(method_cls)
    base["data"] = dict.fromkeys(Preprocessing.settings())
    config = {"method": method, **merge(base, {k: v for k, v in shipped.items() if k != "method"})}
    check_keys(config, base)
    return config


def expand_views(views: str | dict | None) -> dict:
    """A preset's name, or a dict with ``preset:`` and changes to it, as plain view settings."""
    if isinstance(views, str):
        views = {"preset": views}
    views = dict(views or {})
    name = views.pop("preset", None)
    if name is not None and name not in VIEW_PRESETS:
        raise ValueError(f"unknown view preset {name!r}; choose one of {sorted(VIEW_PRESETS)}")
    return {**VIEW_PRESETS.get(name, {}), **views}


def resolve_config(method: str, user_config: dict | None = None) -> dict:
    """``method``'s full default config updated by ``user_config``; unknown keys are named, not ignored."""
    user = dict(user_config or {})
    if "views" in user:
        user["views"] = expand_views(user["views"])
    defaults = default_config(method)
    check_keys(user, defaults)
    return merge(defaults, user)


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update; ``None`` values in ``override`` leave ``base`` untouched."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict):
            merged[key] = merge(merged.get(key) or {}, value)
        elif value is not None:
            merged[key] = value
    return merged


def check_keys(config: dict, allowed: dict) -> None:
    """Every section and setting of ``config`` must exist in ``allowed`` (a full config)."""
    for section, settings in config.items():
        if section in ("method", "seed", "data_source"):
            continue
        if section not in allowed:
            raise ValueError(f"unknown config section {section!r}; sections: {', '.join(sorted(allowed))}")
        unknown = set(settings or {}) - set(allowed[section])
        if unknown:
            raise ValueError(
                f"unknown {section} setting(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed[section]))}"
            )


def parse_assignments(assignments: list[str]) -> dict:
    """``["training.batch_size=128", "views=geometric"]`` as a nested config; values read as YAML."""
    config: dict = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path) or len(path) > 2:
            raise ValueError(f"--set {text!r}: write SECTION.KEY=VALUE, e.g. training.batch_size=128 (or views=PRESET)")
        if len(path) == 1 and path[0] != "views":
            raise ValueError(f"--set {text!r}: only views takes a value of its own (a preset); write {key}.KEY=VALUE")
        parsed = yaml.safe_load(value)
        if len(path) == 1:
            config["views"] = merge(config.get("views") or {}, expand_views(parsed))
        else:
            config.setdefault(path[0], {})[path[1]] = parsed
    return config


def flag_help(cls: type) -> dict[str, tuple[Any, str, type]]:
    """Each field's default, help text and type (``float | None`` gives float), for a command's flags."""
    hints = get_type_hints(cls)
    kinds = {name: _without_none(hint) for name, hint in hints.items()}
    return {
        f.name: (f.default if f.default is not MISSING else None, f.metadata.get("help", ""), kinds[f.name])
        for f in fields(cls)
    }


def _without_none(hint: Any) -> Any:
    """``float | None`` -> float; any other hint as it is."""
    return next(t for t in get_args(hint) if t is not type(None)) if isinstance(hint, UnionType) else hint


def changeable_on_resume() -> set[str]:
    """The training settings a resumed run may change: when and where it stops, how it logs."""
    return {f.name for f in fields(TrainingConfig) if f.metadata.get("on_resume")}
