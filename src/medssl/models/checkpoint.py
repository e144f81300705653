"""The encoder file: weights plus the metadata needed to use them, loadable without unpickling code.

``torch.load(weights_only=True)`` accepts only tensors and plain containers, so a shared file
cannot execute anything on load.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from medssl import __version__
from medssl.models.encoders import Encoder, EncoderConfig, monai_network

FORMAT = "medssl-encoder/1"


class EncoderMismatchError(ValueError):
    """The weights in a file do not fit the model they are loaded into."""


def save_encoder(path: str | Path, encoder: Encoder, *, method: str, preprocessing: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "method": method,
        "encoder": encoder.to_dict(),
        "spatial_dims": encoder.config.spatial_dims,
        "in_channels": encoder.config.in_channels,
        "out_dim": encoder.out_dim,
        "preprocessing": _plain(preprocessing),
        "axis_convention": preprocessing.get("axis_convention", ""),
        "medssl_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    torch.save({"metadata": metadata, "state_dict": state}, path)
    export_for_monai(path, encoder, metadata)
    return path


def export_for_monai(path: Path, encoder: Encoder, metadata: dict) -> None:
    """Beside encoder.pt: encoder.safetensors (the backbone's weights under MONAI's own names) and
    encoder.json (the MONAI class, its arguments and how to read features off it), so that anyone
    can rebuild the encoder with MONAI alone; docs/encoder-files.md has the recipe."""
    network, kwargs = monai_network(encoder.config)
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.backbone.state_dict().items()}
    save_file(weights, path.with_suffix(".safetensors"), metadata={"format": "pt"})
    features = "net(x)[0].mean(dim=1)" if encoder.config.is_vit else "net(x)"
    spec = {"monai_network": f"monai.networks.nets.{network}", "kwargs": kwargs, "features": features, **metadata}
    path.with_suffix(".json").write_text(json.dumps(spec, indent=2))


def read_encoder_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or corrupt files
        raise EncoderMismatchError(f"{path}: not a readable medssl encoder file ({error})") from error
    if not isinstance(payload, dict) or payload.get("metadata", {}).get("format") != FORMAT:
        raise EncoderMismatchError(f"{path}: not a medssl encoder file (expected format {FORMAT})")
    return payload["metadata"], payload["state_dict"]


def load_encoder(path: str | Path) -> tuple[Encoder, dict]:
    """Builds the encoder described in the file and loads its weights."""
    metadata, state = read_encoder_file(path)
    encoder = Encoder(EncoderConfig(**metadata["encoder"]))
    encoder.load_state_dict(state)
    return encoder, metadata


def load_weights_into(encoder: Encoder, path: str | Path) -> dict:
    """Loads a file's weights into an existing encoder, naming every mismatch before touching it."""
    metadata, state = read_encoder_file(path)
    saved, wanted = metadata["encoder"], encoder.to_dict()
    mismatches = [
        f"{k}: file has {saved.get(k)!r}, model has {wanted[k]!r}" for k in wanted if saved.get(k) != wanted[k]
    ]
    if mismatches:
        raise EncoderMismatchError(f"{path} does not fit this model: " + "; ".join(mismatches))
    encoder.load_state_dict(state)
    return metadata


def _plain(value):
    """Tuples become lists so that the metadata holds only types weights_only loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
