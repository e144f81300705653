"""Motion between the frames of a cine, learnt from the images alone.

A network maps a (fixed, moving) frame pair to a dense displacement field (DDF) in pixels such
that the moving frame warped by it, ``moving(x + ddf(x))``, matches the fixed one. It trains on
pairs of a cine's end-diastolic frame (the first: cine is triggered on the R wave) and another of
its frames, in both orders, so that one network gives the motion either way: from end-diastole to
a frame (where a structure goes, how its area changes) and back (to carry a mask along).
Loss: mean squared difference of intensities (bSSFP: one contrast over the cycle) plus bending
energy, which keeps the field smooth where the image is flat, as inside a blood pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import BendingEnergyLoss
from monai.networks.blocks import Warp
from monai.networks.nets import LocalNet
from torch import nn

from medssl.evaluation.selection import train_with_selection
from medssl.models.numerics import fast_autocast
from medssl.motion.settings import RegistrationSettings


class MotionNet(nn.Module):
    """(fixed, moving): (B, 1, H, W) each -> DDF (B, 2, H, W) in pixels, LocalNet's (Hu et al.
    2018, "Weakly-supervised convolutional neural networks for multimodal image registration")."""

    def __init__(self, settings: RegistrationSettings = RegistrationSettings()) -> None:
        super().__init__()
        self.net = LocalNet(
            spatial_dims=2,
            in_channels=2,
            out_channels=2,
            num_channel_initial=settings.width,
            extract_levels=tuple(range(settings.levels + 1)),
            out_kernel_initializer="zeros",  # training starts from no motion, not a random field
        )
        self.multiple = 2**settings.levels

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        if fixed.shape[-1] % self.multiple or fixed.shape[-2] % self.multiple:
            raise ValueError(
                f"frames of {tuple(fixed.shape[-2:])} pixels: both sides must be multiples of {self.multiple}"
            )
        with fast_autocast(fixed.device):
            ddf = self.net(torch.cat([fixed, moving], dim=1))
        return ddf.float()


def warp(image: torch.Tensor, ddf: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``image(x + ddf(x))``; ``mode="nearest"`` for label maps."""
    return Warp(mode=mode, padding_mode="border")(image.float(), ddf)


def _pairs(frames: torch.Tensor, index: torch.Tensor, generator: torch.Generator | None = None) -> tuple:
    """(fixed, moving) for the cines ``index`` of ``frames`` (N, T, 1, H, W): end-diastole and a
    random other frame, in a random order."""
    t = torch.randint(1, frames.shape[1], (len(index),), generator=generator)
    ed, other = frames[index, 0], frames[index, t]
    swap = (torch.rand(len(index), generator=generator) < 0.5).view(-1, 1, 1, 1)
    return torch.where(swap, other, ed), torch.where(swap, ed, other)


def registration_loss(net: MotionNet, fixed: torch.Tensor, moving: torch.Tensor, bending_weight: float) -> torch.Tensor:
    ddf = net(fixed, moving)
    return F.mse_loss(warp(moving, ddf), fixed) + bending_weight * BendingEnergyLoss()(ddf)


def train_registration(
    train: torch.Tensor,
    val: torch.Tensor,
    settings: RegistrationSettings = RegistrationSettings(),
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[MotionNet, dict]:
    """Trains on the cines ``train`` (N, T, 1, H, W) in [0, 1]; keeps the state of the lowest
    loss on fixed pairs of ``val``'s cines. Returns the net and {val_loss, step, history}."""
    torch.manual_seed(seed)
    net = MotionNet(settings).to(device)
    fixed_val = _pairs(val, torch.arange(len(val)).repeat(4), torch.Generator().manual_seed(seed))

    def batch_loss() -> torch.Tensor:
        fixed, moving = _pairs(train, torch.randint(len(train), (settings.batch_size,)))
        return registration_loss(net, fixed.to(device), moving.to(device), settings.bending_weight)

    @torch.no_grad()
    def val_score() -> float:
        net.eval()
        losses = [
            registration_loss(net, f.to(device), m.to(device), settings.bending_weight).item() * len(f)
            for f, m in zip(fixed_val[0].split(64), fixed_val[1].split(64))
        ]
        return -sum(losses) / len(fixed_val[0])

    record = train_with_selection(
        net,
        batch_loss,
        val_score,
        settings.schedule,
        n_samples=len(train) * (train.shape[1] - 1),
        batch_size=settings.batch_size,
    )
    return net, {"val_loss": -record["score"], "step": record["step"], "history": record["history"]}


@torch.no_grad()
def cycle_motion(net: MotionNet, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For one cine (T, 1, H, W): the fields from end-diastole to each frame, (T, 2, H, W) on
    end-diastole's pixels (where each one's tissue is in frame t), and back, on each frame's pixels
    (where its tissue was at end-diastole). Frame 0's fields are zero."""
    net.eval()
    device = next(net.parameters()).device
    frames = frames.to(device)
    ed = frames[:1].expand_as(frames)
    forward, backward = net(ed, frames), net(frames, ed)
    forward[0], backward[0] = 0, 0
    return forward.cpu(), backward.cpu()


def jacobian_determinant(ddf: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) displacement -> (B, H, W) local area ratio of the map x -> x + ddf(x): below
    1 where the tissue at x contracts, 1 where it moves rigidly or keeps its area."""
    (d00, d01), (d10, d11) = (torch.gradient(ddf[:, c], dim=(1, 2)) for c in (0, 1))
    return (1 + d00) * (1 + d11) - d01 * d10
