from __future__ import annotations

import pytest
import torch

from medssl.models.checkpoint import EncoderMismatchError, load_encoder, load_weights_into, save_encoder
from medssl.models.encoders import Encoder, EncoderConfig, build_encoder


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
    path = save_encoder(
        tmp_path / "enc.pt",
        encoder,
        method="simclr",
        preprocessing={"image_size": (8, 8, 8), "axis_convention": "RAS+"},
    )
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


@pytest.mark.parametrize("stem", ["small", "strided", "imagenet"])
def test_stride_matches_the_feature_grid(stem):
    config = EncoderConfig(name="resnet10", width=8, stem=stem)
    grid = Encoder(config).feature_map(torch.rand(1, 1, 64, 64)).shape[2:]
    assert tuple(grid) == (64 // config.stride,) * 2


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_vit_features_map_and_file_round_trip(tmp_path, spatial_dims):
    encoder = build_encoder(
        name="vit_tiny", width=24, patch_size=4, image_size=[12] * spatial_dims, spatial_dims=spatial_dims
    )
    images = torch.rand(2, 1, *([12] * spatial_dims))
    assert encoder(images).shape == (2, 24)
    assert encoder.feature_map(images).shape == (2, 24, *([3] * spatial_dims))
    path = save_encoder(tmp_path / "vit.pt", encoder, method="mae", preprocessing={})
    loaded, metadata = load_encoder(path)
    assert metadata["encoder"]["image_size"] == [12] * spatial_dims
    encoder.eval(), loaded.eval()
    assert torch.equal(encoder(images), loaded(images))


def test_vit_settings_that_cannot_work_are_named():
    with pytest.raises(
        ValueError,
        match=r"patch size 5 does not divide the image size \(28, 28\); valid patch sizes: \[1, 2, 4, 7, 14, 28\]",
    ):
        build_encoder(name="vit_tiny", width=24, patch_size=5, image_size=[28, 28])
    with pytest.raises(ValueError, match="width .* must be a multiple of 3; got 64"):
        build_encoder(name="vit_tiny", width=64, image_size=[28, 28])
    with pytest.raises(ValueError, match="needs the image size"):
        build_encoder(name="vit_tiny", width=24)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vit_tiny"])
def test_stage_maps_run_fine_to_coarse_with_their_channels(name):
    encoder = build_encoder(name=name, width=24, image_size=(16, 16) if name == "vit_tiny" else None)
    maps = encoder.stage_maps(torch.randn(2, 1, 16, 16))
    assert [m.shape[1] for m in maps] == encoder.stage_channels()
    assert [m.shape[-1] for m in maps] == sorted((m.shape[-1] for m in maps), reverse=True)
    assert maps[-1].shape[2:] == encoder.feature_map(torch.randn(2, 1, 16, 16)).shape[2:]


@pytest.mark.parametrize(
    "config",
    [
        {"name": "resnet18", "width": 8, "stem": "pooled", "spatial_dims": 2},
        {"name": "resnet50", "width": 4, "stem": "strided", "spatial_dims": 3},
        {"name": "vit_tiny", "width": 24, "patch_size": 4, "image_size": [16, 16], "spatial_dims": 2},
    ],
)
def test_the_docs_recipe_rebuilds_the_encoder_with_monai_alone(tmp_path, config):
    """docs/encoder-files.md, line for line: MONAI, safetensors and json, no medssl."""
    import json

    from monai.networks import nets
    from safetensors.torch import load_file

    encoder = build_encoder(**config).eval()
    save_encoder(tmp_path / "encoder.pt", encoder, method="simclr", preprocessing={})
    spec = json.load(open(tmp_path / "encoder.json"))
    net = getattr(nets, spec["monai_network"].rsplit(".", 1)[1])(**spec["kwargs"])
    net.load_state_dict(load_file(tmp_path / "encoder.safetensors"))
    net.eval()
    x = torch.randn(2, spec["in_channels"], *([16] * spec["spatial_dims"]))
    features = net(x)[0].mean(dim=1) if spec["features"] == "net(x)[0].mean(dim=1)" else net(x)
    with torch.no_grad():
        torch.testing.assert_close(features, encoder(x))
