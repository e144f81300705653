"""Variational autoencoder (Kingma & Welling, ICLR 2014) with a weighted KL term, the beta-VAE
(Higgins et al., ICLR 2017), on the autoencoder's bottleneck and decoder.

The latent is a Gaussian per latent channel and feature-map position (a grid, not one vector): the
bottleneck stays a 1x1 convolution, so the model needs no layer sized to the image, runs on any
2D or 3D size, and keeps reconstruction errors local. At 28 px the grid is only 2x2 (2x2x2 in
3D), close to a vector latent; the prior treats positions as independent.

The loss is the negative ELBO with a Gaussian likelihood of variance 1/2 (summed squared error)
plus beta times the KL, both divided by the pixels per image so that its scale matches the
autoencoder's mean squared error. beta may be warmed up from 0 (KL annealing, Bowman et al. 2016)
so that the decoder learns to use the latent before the KL pulls the posterior to the prior.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.losses.kl_divergence import gaussian_kl
from medssl.methods.autoencoder import Autoencoder
from medssl.methods.registry import register


@register
class VAE(Autoencoder):
    name = "vae"
    description = "generative: variational autoencoder, reconstruction + beta * KL to a Gaussian prior"
    latent_outputs = 2  # mean and log-variance

    def __init__(self, *args, beta: float = 1.0, kl_warmup: float = 0.1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta, self.kl_warmup = beta, kl_warmup

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance, each (B, latent_dim, *grid)."""
        mean, logvar = self.encode(images).chunk(2, dim=1)
        return mean, logvar.clamp(-10.0, 10.0)  # bounded so that exp() stays finite early on and in bf16

    def latent(self, images: torch.Tensor) -> torch.Tensor:
        return self.posterior(images)[0]  # the mean: reconstructions (and anomaly scores) are deterministic

    def loss_terms(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction error and KL, both per pixel, on one draw of the reparameterised latent."""
        x = self.inputs(images)
        mean, logvar = self.posterior(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        reconstruction = self.decode(z, tuple(x.shape[2:]))
        return F.mse_loss(reconstruction, x), gaussian_kl(mean, logvar).mean() / x[0].numel()

    def kl_weight(self) -> float:
        """beta, ramped up linearly over the first ``kl_warmup`` fraction of training."""
        if self.kl_warmup <= 0:
            return self.beta
        return self.beta * min(1.0, self.training_progress() / self.kl_warmup)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        reconstruction, kl = self.loss_terms(images)
        return reconstruction + self.kl_weight() * kl

    def prior_samples(self, images: torch.Tensor) -> torch.Tensor:
        """One decoded draw from the prior per image, on the latent grid of ``images``' size."""
        mean, _ = self.posterior(images)
        return self.decode(torch.randn_like(mean), tuple(images.shape[2:]))

    def figures(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        return {**super().figures(images), "samples": {"prior samples": self.prior_samples(images)}}
