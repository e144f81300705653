"""Diffusion autoencoder (Preechakul et al., "Diffusion Autoencoders: Toward a Meaningful and
Decodable Representation", CVPR 2022) on a DDPM (Ho et al., "Denoising Diffusion Probabilistic
Models", NeurIPS 2020).

The encoder maps the clean image to a semantic vector z; a small MONAI ``DiffusionModelUNet``
predicts the noise added to the image at a random timestep, given the timestep and z (one
cross-attention context token). The loss is DDPM's epsilon MSE: the encoder learns because z is
the denoiser's only view of the image behind heavy noise. Decoding is deterministic DDIM (Song et
al., ICLR 2021): ``reconstruct`` noises the input part-way and denoises it conditioned on its own
z; samples from fresh noise with the same z show what z carries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler
from torch import nn

from medssl.methods.base import SSLMethod
from medssl.methods.registry import register
from medssl.models.encoders import EncoderConfig

CHANNEL_MULTIPLIERS = (1, 2, 4)  # UNet levels: 28 -> 14 -> 7 pixels for MedMNIST
SIZE_DIVISOR = 2 ** (len(CHANNEL_MULTIPLIERS) - 1)  # skip connections need exact halving per level


def nearest_valid(side: int) -> list[int]:
    below = side // SIZE_DIVISOR * SIZE_DIVISOR
    return [size for size in (below, below + SIZE_DIVISOR) if size > 0]


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to DDPM's [-1, 1] data range (DDIM clips its estimates of x0 to it)."""
    return images * 2 - 1


def to_unit(samples: torch.Tensor) -> torch.Tensor:
    return (samples + 1) / 2


@register
class DiffusionAutoencoder(SSLMethod):
    name = "diffusion"
    description = "generative: a DDPM denoiser conditioned on the encoder's code z predicts the added noise (diffusion autoencoder)"

    def __init__(
        self,
        *args,
        width: int = 16,
        num_res_blocks: int = 1,
        context_dim: int = 64,
        head_channels: int = 16,
        train_timesteps: int = 1000,
        inference_steps: int = 20,
        reconstruction_noise: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0 < reconstruction_noise <= 1:
            raise ValueError(
                f"reconstruction_noise is the fraction of the diffusion to undo, in (0, 1]; got {reconstruction_noise}"
            )
        channels = self.encoder.config.in_channels
        self.to_context = nn.Linear(self.encoder.out_dim, context_dim)
        self.unet = DiffusionModelUNet(
            spatial_dims=self.spatial_dims,
            in_channels=channels,
            out_channels=channels,
            num_res_blocks=num_res_blocks,
            channels=[width * m for m in CHANNEL_MULTIPLIERS],
            attention_levels=[
                False,
                False,
                True,
            ],  # z enters at the coarsest level and the middle; attention at 14^3 would dominate the cost
            norm_num_groups=8,
            num_head_channels=head_channels,
            with_conditioning=True,
            cross_attention_dim=context_dim,
        )
        # One schedule for both directions: add_noise is DDPM's forward process q(x_t | x_0), step is DDIM's.
        self.scheduler = DDIMScheduler(num_train_timesteps=train_timesteps)
        self.scheduler.set_timesteps(inference_steps)
        self.reconstruction_start = round(reconstruction_noise * (train_timesteps - 1))

    @classmethod
    def check_input(cls, image_size: tuple[int, ...], encoder: EncoderConfig, **method_args) -> None:
        wrong = sorted({side for side in image_size if side % SIZE_DIVISOR})
        if wrong:
            nearest = "; ".join(f"{side} -> {' or '.join(map(str, nearest_valid(side)))}" for side in wrong)
            raise ValueError(
                f"diffusion's UNet halves the image {len(CHANNEL_MULTIPLIERS) - 1} times, so every side must be a multiple of {SIZE_DIVISOR}; "
                f"got {tuple(image_size)} (nearest valid sides: {nearest})"
            )

    def context(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, context_dim): the encoder's code of the clean images as one cross-attention token."""
        return self.to_context(self.encoder(images)).unsqueeze(1)

    def compute_loss(self, images: torch.Tensor) -> torch.Tensor:
        views = self.views(images)
        clean = to_signed(views).contiguous()  # the UNet runs ~30% slower channels-last on CPU
        noise = torch.randn_like(clean)  # timesteps and noise from the global RNG: fixed under a seed
        timesteps = torch.randint(self.scheduler.num_train_timesteps, (len(clean),), device=clean.device)
        predicted = self.unet(self.scheduler.add_noise(clean, noise, timesteps), timesteps, context=self.context(views))
        return F.mse_loss(predicted.float(), noise)

    def denoise(self, noisy: torch.Tensor, context: torch.Tensor, start: int) -> torch.Tensor:
        """Deterministic DDIM (eta 0) from timestep ``start`` to a clean sample in [-1, 1], in the
        stride that ``DDIMScheduler.step`` assumes (train steps // inference steps)."""
        stride = self.scheduler.num_train_timesteps // self.scheduler.num_inference_steps
        sample = noisy
        for t in range(start, -1, -stride):
            timesteps = torch.full((len(sample),), t, device=sample.device)
            sample, _ = self.scheduler.step(self.unet(sample, timesteps, context=context), t, sample)
        return sample

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Noise to ``reconstruction_noise`` of the way, then denoise guided by the input's own z:
        what the model cannot explain from z and the remaining signal (e.g. a lesion) is lost."""
        clean = to_signed(images).contiguous()
        timesteps = torch.full((len(images),), self.reconstruction_start, device=images.device)
        noisy = self.scheduler.add_noise(clean, torch.randn_like(clean), timesteps)
        return to_unit(self.denoise(noisy, self.context(images), self.reconstruction_start))

    @torch.no_grad()
    def figures(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        noise = torch.randn_like(images.contiguous())
        samples = self.denoise(noise, self.context(images), self.scheduler.num_train_timesteps - 1)
        return {
            "diffusion": {
                "input": images,
                "reconstruction": self.reconstruct(images),
                "samples (z of input, new noise)": to_unit(samples),
            }
        }
