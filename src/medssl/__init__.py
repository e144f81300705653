"""medssl: self-supervised learning for population-scale medical imaging, in 2D and 3D."""

__version__ = "0.1.0"
