"""Convolutional autoencoder (Hinton & Salakhutdinov, Science 2006; convolutional as in Masci et
al., ICANN 2011): the encoder's feature map, squeezed by a 1x1 convolution to a few latent
channels, must be decoded back into the image.

The narrow bottleneck is what makes the task non-trivial: the decoder has no skip connections, so
everything it draws passes through ``latent_dim`` numbers per feature-map position.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution

from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.decoders import decoder_for


@register
class Autoencoder(SSLMethod):
    name = "autoencoder"
    description = "generative: reconstruct the image through a narrow convolutional bottleneck (MSE)"
    latent_outputs: ClassVar[int] = 1  # bottleneck outputs per latent channel (the VAE: mean and log-variance)

    def __init__(self, *args, latent_dim: int = 16, decoder_width: int = 32, augment: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.augment = augment
        self.bottleneck = Convolution(
            self.spatial_dims, self.encoder.out_dim, self.latent_outputs * latent_dim, kernel_size=1, conv_only=True
        )
        self.decoder = decoder_for(self.encoder, latent_dim, decoder_width)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The bottleneck's output, (B, latent_outputs * latent_dim, *grid)."""
        return self.bottleneck(self.encoder.feature_map(images))

    def decode(self, latent: torch.Tensor, image_size: tuple[int, ...]) -> torch.Tensor:
        return self.decoder(latent, image_size)

    def latent(self, images: torch.Tensor) -> torch.Tensor:
        """The deterministic code that ``reconstruct`` decodes."""
        return self.encode(images)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.latent(images), tuple(images.shape[2:]))

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the model learns to reconstruct: the images, or light random views of them."""
        return self.views(images) if self.augment else images

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        x = self.inputs(images)
        return F.mse_loss(self.reconstruct(x), x)

    def figures(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        return {"reconstructions": {"input": images, "reconstruction": self.reconstruct(images)}}
