"""W-MSE: whitening gives identity covariance, and two views of a scan score lower than two scans."""

import torch

from medssl.methods.w_mse import w_mse_loss, whiten


def test_whitened_embeddings_have_zero_mean_and_identity_covariance():
    z = torch.randn(256, 8) @ torch.randn(8, 8) + 3.0  # correlated, off-centre
    w = whiten(z, shrinkage=0.0)
    torch.testing.assert_close(w.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(w.T @ w / 255, torch.eye(8), atol=1e-3, rtol=0)


def test_the_loss_is_low_for_matching_views_and_high_for_unrelated_ones():
    torch.manual_seed(0)
    z = torch.randn(128, 16)
    matching = w_mse_loss(z, z + 0.05 * torch.randn_like(z), sub_batch=64, shrinkage=1e-3)
    unrelated = w_mse_loss(z, torch.randn_like(z), sub_batch=64, shrinkage=1e-3)
    assert matching < 0.05 and unrelated > 1.5
