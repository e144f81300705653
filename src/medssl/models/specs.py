"""What an encoder is, without building one: the architectures by name and ``EncoderConfig``.
Torch-free, so that the command line can show these choices and defaults at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def setting(default: Any, help: str, *, on_resume: bool = False) -> Any:
    """A dataclass field whose help text the command line shows beside its default; ``on_resume``:
    a resumed run may change it (when and where it stops, how it logs), not what it learns."""
    return field(default=default, metadata={"help": help, "on_resume": on_resume})


# name -> (block, layers); the depths of He et al. (2016).
RESNETS: dict[str, tuple[str, list[int]]] = {
    "resnet10": ("basic", [1, 1, 1, 1]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}
EXPANSION = {"basic": 1, "bottleneck": 4}  # output channels of a block per its inner width (MONAI's)

# name -> (layers, heads, standard width); the hidden size is ``width``: the sizes of DeiT and
# Dosovitskiy et al. (2021) unless a config says otherwise.
VITS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (12, 3, 192),
    "vit_small": (12, 6, 384),
    "vit_base": (12, 12, 768),
}
ENCODERS = sorted(RESNETS) + sorted(VITS)

# stem -> (first conv kernel, first conv stride, skip max-pool). "small" keeps full resolution
# for 28px inputs; "strided" halves it once (4x fewer FLOPs); "pooled" halves it by a max-pool after
# a full-resolution conv, as MONAI's ResNet with conv1_t_stride=1; "imagenet" is the classic 7x7/2 + pool.
STEMS: dict[str, tuple[int, int, bool]] = {
    "small": (3, 1, True),
    "strided": (3, 2, True),
    "pooled": (3, 1, False),
    "imagenet": (7, 2, False),
}


@dataclass(frozen=True)
class EncoderConfig:
    name: str = setting("resnet18", f"the architecture: {', '.join(ENCODERS)}")
    spatial_dims: int = 2  # set from the data, as are in_channels and image_size
    in_channels: int = 1
    width: int = setting(64, "ResNet: channels of the first stage (64 standard); ViT: hidden size")
    stem: str = setting("strided", f"ResNet only: {', '.join(STEMS)} (see medssl.models.specs.STEMS)")
    patch_size: int = setting(4, "ViT only: side of a patch in pixels/voxels; must divide the image size")
    image_size: tuple[int, ...] | None = None  # ViT only: the positional embedding is fixed to it

    def __post_init__(self) -> None:
        if self.image_size is not None:  # lists come back from YAML and encoder files
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))

    @property
    def is_vit(self) -> bool:
        return self.name in VITS

    @property
    def stride(self) -> int:
        """How many input pixels one position of the feature map spans along each axis."""
        if self.is_vit:
            return self.patch_size
        _, stride, no_max_pool = STEMS[self.stem]
        return stride * (1 if no_max_pool else 2) * 8  # MONAI's ResNet: layers 2-4 halve the size

    def validate(self) -> None:
        if self.name not in ENCODERS:
            raise ValueError(f"unknown encoder '{self.name}'; choose one of {ENCODERS}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem '{self.stem}'; choose one of {sorted(STEMS)}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1 or self.width < 1:
            raise ValueError("in_channels and width must be positive")
        if self.is_vit:
            self._validate_vit()

    def _validate_vit(self) -> None:
        heads = VITS[self.name][1]
        if self.width % heads:
            raise ValueError(
                f"{self.name} has {heads} attention heads, so its width (hidden size) must be a multiple of {heads}; got {self.width}"
            )
        if self.image_size is None or len(self.image_size) != self.spatial_dims:
            raise ValueError(
                f"{self.name} needs the image size ({self.spatial_dims} numbers) for its positional embedding; got {self.image_size}"
            )
        if any(side % self.patch_size for side in self.image_size):
            divisors = [p for p in range(1, min(self.image_size) + 1) if all(s % p == 0 for s in self.image_size)]
            raise ValueError(
                f"ViT patch size {self.patch_size} does not divide the image size {self.image_size}; valid patch sizes: {divisors}"
            )
