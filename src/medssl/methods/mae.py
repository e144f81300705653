"""Masked autoencoders (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

The ViT encoder sees only a random subset of its patches; a light transformer decoder fills the
masked ones back in from the visible tokens plus a learnable mask token, and the loss is the
pixel MSE on the masked patches. 2D and 3D patches alike. The encoder path is the ViT's own
(patch embedding with its positional embedding, blocks, norm), so the saved encoder is the one
trained here.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from einops import rearrange
from monai.networks.blocks import TransformerBlock
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from torch import nn

from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.encoders import VITS, EncoderConfig, freeze_unused_cross_attention_norms

# (B, C, *spatial) <-> (B, tokens, pixels per patch); tokens in the raster order of MONAI's patch
# embedding (first spatial axis slowest), pixels of a patch channel-last.
PATCH_PATTERNS = {
    2: "b c (h p) (w q) -> b (h w) (p q c)",
    3: "b c (h p) (w q) (d r) -> b (h w d) (p q r c)",
}


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, *spatial) -> (B, N, patch_size**d * C)."""
    sides = dict(zip("pqr", [patch_size] * (images.ndim - 2)))
    return rearrange(images, PATCH_PATTERNS[images.ndim - 2], **sides)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, ...]) -> torch.Tensor:
    """(B, N, patch_size**d * C) -> (B, C, *spatial), for a ``grid`` of patches per axis."""
    source, target = PATCH_PATTERNS[len(grid)].split(" -> ")
    sizes = dict(zip("pqr", [patch_size] * len(grid))) | dict(zip("hwd", grid))
    return rearrange(patches, f"{target} -> {source}", **sizes)


def sincos_embedding(grid: tuple[int, ...], dim: int) -> nn.Parameter:
    """Fixed (1, N, dim) sin-cos positions. MONAI needs a multiple of 2 * d channels, so build the
    next one and drop the last (lowest-frequency, nearly constant) channels: any width works."""
    step = 2 * len(grid)
    full = build_sincos_position_embedding(list(grid), -(-dim // step) * step, len(grid))
    return nn.Parameter(full[..., :dim].clone(), requires_grad=False)


def check_mask_ratio(mask_ratio: float) -> None:
    if not 0 < mask_ratio < 1:  # 1 leaves the encoder nothing to see, 0 the loss nothing to score
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")


@register
class MAE(SSLMethod):
    name = "mae"
    description = "masked image modelling: a ViT sees a quarter of its patches, a light decoder restores the rest"

    def __init__(
        self,
        *args,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 4,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        check_mask_ratio(mask_ratio)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        config = self.encoder.config
        self.patch_size = config.patch_size
        self.grid = tuple(side // config.patch_size for side in config.image_size)
        patch_pixels = config.patch_size**self.spatial_dims * config.in_channels
        self.decoder_embed = nn.Linear(config.width, decoder_dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, decoder_dim) * 0.02)
        self.decoder_pos = sincos_embedding(self.grid, decoder_dim)
        self.decoder_blocks = nn.ModuleList(
            TransformerBlock(decoder_dim, 4 * decoder_dim, decoder_heads, qkv_bias=True) for _ in range(decoder_depth)
        )
        freeze_unused_cross_attention_norms(self.decoder_blocks)
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_pixels)

    @classmethod
    def check_input(
        cls, image_size: tuple[int, ...], encoder: EncoderConfig, mask_ratio: float = 0.75, **method_args
    ) -> None:
        check_mask_ratio(mask_ratio)
        if not encoder.is_vit:
            raise ValueError(
                f"mae masks ViT patch tokens, so it needs a ViT encoder ({', '.join(sorted(VITS))}); got {encoder.name}. "
                "For a CNN encoder use masked_reconstruction, its CNN variant"
            )
        replace(encoder, image_size=tuple(image_size)).validate()  # names the valid patch sizes

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        images = self.views(images)
        prediction, masked = self.predict_patches(images, self.mask_ratio)
        error = (prediction.float() - self.targets(images)).pow(2).mean(dim=-1)
        return (error * masked).sum() / masked.sum()

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """Pixels per patch; with ``norm_pix_loss`` each patch is standardised, which the paper
        finds gives better representations (local contrast, not absolute intensity)."""
        patches = patchify(images.float(), self.patch_size)
        if not self.norm_pix_loss:
            return patches
        mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
        return (patches - mean) / (var + 1e-6).sqrt()

    def predict_patches(self, images: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, pixels per patch) predictions and the (B, N) mask, 1 where a patch was hidden."""
        tokens = self.encoder.backbone.patch_embedding(images)  # with the encoder's positions
        batch, count, width = tokens.shape
        keep = round((1 - mask_ratio) * count)
        keep = min(max(keep, 1), count - 1)  # tiny grids: at least one patch seen and one hidden
        # a random permutation per image: its first ``keep`` entries are the visible patches
        visible = torch.rand(batch, count, device=images.device).argsort(dim=1)[:, :keep]
        encoded = self.encode_visible(tokens.gather(1, visible.unsqueeze(-1).expand(-1, -1, width)))
        masked = torch.ones(batch, count, device=images.device).scatter(1, visible, 0.0)
        return self.decode(encoded, visible, count), masked

    def encode_visible(self, tokens: torch.Tensor) -> torch.Tensor:
        backbone = self.encoder.backbone
        for block in backbone.blocks:
            tokens = block(tokens)
        return backbone.norm(tokens)

    def decode(self, encoded: torch.Tensor, visible: torch.Tensor, count: int) -> torch.Tensor:
        embedded = self.decoder_embed(encoded)
        batch, _, dim = embedded.shape
        slots = self.mask_token.to(embedded.dtype).expand(batch, count, dim)
        tokens = slots.scatter(1, visible.unsqueeze(-1).expand(-1, -1, dim), embedded) + self.decoder_pos
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Visible patches kept, masked ones (``mask_ratio`` of them) predicted. Not all patches
        at ratio 0: the loss never trains predictions of seen patches, and a fully visible input
        is far from what the decoder learnt. With ``norm_pix_loss`` the predictions are put back
        on each true patch's mean and spread, as in the paper's figures, so the error measures
        structure within patches, not their mean intensity."""
        return self._reconstruct(images)[0]

    def figures(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        reconstruction, masked = self._reconstruct(images)
        hidden = unpatchify(patchify(images, self.patch_size) * (1 - masked).unsqueeze(-1), self.patch_size, self.grid)
        return {"mae": {"input": images, "masked": hidden, "reconstruction": reconstruction}}

    def _reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction and the (B, N) mask it used."""
        prediction, masked = self.predict_patches(images, self.mask_ratio)
        patches = patchify(images.float(), self.patch_size)
        prediction = prediction.float()
        if self.norm_pix_loss:
            prediction = prediction * (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt() + patches.mean(
                dim=-1, keepdim=True
            )
        mixed = torch.where(masked.bool().unsqueeze(-1), prediction, patches)
        return unpatchify(mixed, self.patch_size, self.grid).to(images.dtype), masked
