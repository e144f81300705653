from __future__ import annotations

import pytest
import torch

from medssl.models.checkpoint import EncoderMismatchError, load_encoder, load_weights_into, save_encoder
from medssl.models.encoders import build_encoder


@pytest.mark.parametrize("spatial_dims, stem", [(2, "small"), (2, "imagenet"), (3, "strided")])
def test_encoder_features(spatial_dims, stem):
    encoder = build_encoder(name="resnet10", spatial_dims=spatial_dims, in_channels=2, width=4, stem=stem)
    features = encoder(torch.rand(3, 2, *([28] * spatial_dims)))
    assert features.shape == (3, encoder.out_dim) == (3, 32)


def test_bottleneck_width():
    assert build_encoder(name="resnet50", width=4).out_dim == 4 * 8 * 4


def test_unknown_names_are_listed():
    with pytest.raises(ValueError, match="unknown encoder 'resnet19'.*resnet18"):
        build_encoder(name="resnet19")


def test_encoder_file_round_trip(tmp_path):
    encoder = build_encoder(name="resnet10", spatial_dims=3, width=4)
    path = save_encoder(tmp_path / "enc.pt", encoder, method="simclr", preprocessing={"image_size": (8, 8, 8), "axis_convention": "RAS+"})
    torch.load(path, weights_only=True)  # nothing but tensors and plain containers inside
    loaded, metadata = load_encoder(path)
    assert metadata["method"] == "simclr" and metadata["spatial_dims"] == 3 and metadata["axis_convention"] == "RAS+"
    assert metadata["preprocessing"]["image_size"] == [8, 8, 8] and metadata["medssl_version"]
    x = torch.rand(2, 1, 8, 8, 8)
    encoder.eval(), loaded.eval()
    assert torch.equal(encoder(x), loaded(x))


@pytest.mark.parametrize(
    "other, named",
    [
        ({"spatial_dims": 2}, "spatial_dims: file has 3, model has 2"),
        ({"in_channels": 3}, "in_channels: file has 1, model has 3"),
        ({"width": 8}, "width: file has 4, model has 8"),
        ({"name": "resnet18"}, "name: file has 'resnet10', model has 'resnet18'"),
    ],
)
def test_loading_into_a_mismatched_model_names_the_mismatch(tmp_path, other, named):
    config = {"name": "resnet10", "spatial_dims": 3, "in_channels": 1, "width": 4}
    path = save_encoder(tmp_path / "enc.pt", build_encoder(**config), method="simclr", preprocessing={})
    with pytest.raises(EncoderMismatchError, match=named):
        load_weights_into(build_encoder(**{**config, **other}), path)


def test_foreign_file_is_refused(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderMismatchError, match="not a readable medssl encoder file"):
        load_encoder(tmp_path / "x.pt")
