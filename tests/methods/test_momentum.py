"""Momentum copies and queues move after the optimiser step, in the base, never inside a loss."""

import pytest
import torch
from test_methods import structured_images, tiny_method

from medssl.methods.queue import FeatureQueue


@pytest.mark.parametrize("name", ["moco_v2", "nnclr"])
def test_a_loss_leaves_the_queue_alone_until_the_step_is_taken(name):
    method, size = tiny_method(name, 2)
    queue = next(m for m in method.modules() if isinstance(m, FeatureQueue))
    images = structured_images(8, 2, size)
    before = queue.features.clone()
    method.compute_loss(images)
    assert torch.equal(queue.features, before)  # evaluating the loss changed nothing
    method.discard_step()  # a skipped (non-finite) step
    method.on_train_batch_end(None, (images,), 0)
    assert torch.equal(queue.features, before)
    method.compute_loss(images)
    method.on_train_batch_end(None, (images,), 0)
    assert not torch.equal(queue.features, before) and int(queue.start) > 0


@pytest.mark.parametrize("name", ["byol", "moco_v3", "dino"])
def test_every_momentum_copy_follows_its_online_network_after_the_step(name):
    method, _ = tiny_method(name, 2)
    (online, copy), *_ = method.momentum_pairs()
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    gap = sum((a - b).abs().sum() for a, b in zip(online.parameters(), copy.network.parameters()))
    method.on_train_batch_end(None, (None,), 0)
    after = sum((a - b).abs().sum() for a, b in zip(online.parameters(), copy.network.parameters()))
    assert after < gap
