"""MAE: input checks, patch bookkeeping in 2D and 3D, the masked-only loss and the figures."""

from __future__ import annotations

import re

import pytest
import torch

from medssl.methods.mae import MAE, patchify, unpatchify
from medssl.models.encoders import EncoderConfig


def tiny_mae(spatial_dims: int, size: int, **kwargs) -> MAE:
    torch.manual_seed(0)
    encoder = {
        "name": "vit_tiny",
        "width": 24,
        "patch_size": 4,
        "spatial_dims": spatial_dims,
        "in_channels": 1,
        "image_size": [size] * spatial_dims,
    }
    return MAE(encoder=encoder, decoder_dim=24, decoder_depth=1, **kwargs)


def test_refuses_a_cnn_encoder_and_names_the_alternative():
    with pytest.raises(
        ValueError, match=r"needs a ViT encoder \(vit_base, vit_small, vit_tiny\); got resnet18.*masked_reconstruction"
    ):
        MAE.check_input((28, 28), EncoderConfig(name="resnet18"))


@pytest.mark.parametrize(("size", "valid"), [((28, 28), "[1, 2, 4, 7, 14, 28]"), ((12, 12, 12), "[1, 2, 3, 4, 6, 12]")])
def test_names_the_valid_patch_sizes(size, valid):
    encoder = EncoderConfig(name="vit_tiny", width=24, patch_size=5, spatial_dims=len(size))
    with pytest.raises(
        ValueError, match=re.escape(f"patch size 5 does not divide the image size {size}; valid patch sizes: {valid}")
    ):
        MAE.check_input(size, encoder)
    MAE.check_input(size, EncoderConfig(name="vit_tiny", width=24, patch_size=4, spatial_dims=len(size)))


@pytest.mark.parametrize("spatial", [(8, 12), (8, 4, 12)])
def test_patchify_round_trip(spatial):
    images = torch.rand(2, 3, *spatial)
    patches = patchify(images, 4)
    grid = tuple(s // 4 for s in spatial)
    assert patches.shape == (2, torch.Size(grid).numel(), 4 ** len(spatial) * 3)
    assert torch.equal(unpatchify(patches, 4, grid), images)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_patches_are_in_the_order_of_the_encoder_tokens(spatial_dims):
    method = tiny_mae(spatial_dims, 12).eval()
    images = torch.zeros(1, 1, *([12] * spatial_dims))
    images[(0, 0, *[slice(4, 8)] * (spatial_dims - 1), slice(8, 12))] = 1.0  # one patch, off the diagonal
    embed = method.encoder.backbone.patch_embedding
    changed = (embed(images) - embed(torch.zeros_like(images))).abs().sum(-1)[0] > 0
    assert torch.equal(changed, patchify(images, 4)[0].abs().sum(-1) > 0)


@pytest.mark.parametrize(("spatial_dims", "tokens", "visible"), [(2, 16, 4), (3, 27, 7)])
def test_encoder_sees_round_one_minus_ratio_of_the_tokens(spatial_dims, tokens, visible, monkeypatch):
    method = tiny_mae(spatial_dims, 12 if spatial_dims == 3 else 16)
    seen = []
    encode = method.encode_visible
    monkeypatch.setattr(method, "encode_visible", lambda x: seen.append(x.shape[1]) or encode(x))
    _, masked = method.predict_patches(torch.rand(3, 1, *method.encoder.config.image_size), 0.75)
    assert seen == [visible] and masked.shape == (3, tokens)
    assert masked.sum(1).tolist() == [tokens - visible] * 3


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_loss_ignores_predictions_of_visible_patches(norm_pix_loss, monkeypatch):
    method = tiny_mae(2, 16, norm_pix_loss=norm_pix_loss)
    images = torch.rand(4, 1, 16, 16)
    predict = method.predict_patches

    def loss_with_offset(where: str) -> float:
        def shifted(x: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
            prediction, masked = predict(x, ratio)
            chosen = masked if where == "masked" else 1 - masked
            return prediction + 100 * chosen.unsqueeze(-1), masked

        monkeypatch.setattr(method, "predict_patches", shifted)
        torch.manual_seed(5)  # the same views and mask each time
        return method.compute_loss(images).item()

    plain = loss_with_offset("none")
    assert loss_with_offset("visible") == pytest.approx(plain, rel=1e-6)
    assert loss_with_offset("masked") > plain + 1000


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_figures_show_input_masked_and_a_reconstruction_that_keeps_visible_patches(spatial_dims):
    method = tiny_mae(spatial_dims, 12).eval()
    images = 0.1 + torch.rand(5, 1, *([12] * spatial_dims))  # no zero pixels: zeros mark hidden patches
    with torch.no_grad():
        rows = method.figures(images)["mae"]
    assert list(rows) == ["input", "masked", "reconstruction"]
    assert all(row.shape == images.shape for row in rows.values())
    assert torch.equal(rows["input"], images)
    hidden = patchify(rows["masked"], 4).abs().sum(-1) == 0
    assert hidden.sum(1).tolist() == [{2: 7, 3: 20}[spatial_dims]] * 5  # 9 or 27 patches, a quarter kept
    visible = rows["masked"] != 0
    assert torch.allclose(rows["reconstruction"][visible], images[visible])
    assert not torch.allclose(rows["reconstruction"][~visible], images[~visible])
    assert method.reconstruct(images).shape == images.shape


def test_refuses_a_mask_ratio_outside_zero_to_one():
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\), got 1.0"):
        tiny_mae(2, 16, mask_ratio=1.0)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\), got 0"):  # before training, too
        MAE.check_input((16, 16), EncoderConfig(name="vit_tiny", width=24), mask_ratio=0)
