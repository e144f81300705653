"""The shared part of the restoration methods (Models Genesis, masked reconstruction): the encoder
plus a light decoder learn to undo a corruption of the image."""

from __future__ import annotations

from abc import abstractmethod

import torch

from medssl.methods.base import SSLMethod
from medssl.models.decoders import decoder_for


class RestorationMethod(SSLMethod):
    """Encoder -> Decoder back to image space; subclasses define the corruption and the loss."""

    def __init__(self, *args, decoder_width: int = 64, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decoder = decoder_for(self.encoder, self.encoder.out_dim, decoder_width)

    @abstractmethod
    def corrupt(self, images: torch.Tensor) -> torch.Tensor:
        """A corrupted copy of ``images``, the input of the restoration."""

    def restore(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.feature_map(images), tuple(images.shape[2:]))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.restore(images)

    def figures(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        corrupted = self.corrupt(images)
        return {"restoration": {"input": images, "corrupted": corrupted, "restored": self.restore(corrupted)}}
