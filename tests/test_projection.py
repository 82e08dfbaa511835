"""GAN inversion (ssl_lab.gan.projection): projector.py's schedules, and projecting images
of the tiny random generator back to their latent codes."""
import math

import numpy as np
import pytest
import torch

from ssl_lab.gan.projection import learning_rate, mse_distance, project, w_noise_scale, w_stats
from ssl_lab.nets.stylegan2 import build


@pytest.fixture
def smoke():
    torch.manual_seed(0)
    G, _ = build("smoke")
    G.eval()
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws_true = G.mapping(z)
        target = G.synthesis(ws_true, noise_mode="const")
    return G, ws_true, target


def test_learning_rate_schedule_is_projectors():
    steps, lr = 1000, 0.1
    assert learning_rate(0, steps, lr) == 0.0                          # t = 0: ramp-up at 0
    assert math.isclose(learning_rate(25, steps, lr), 0.05)            # half way up (t = 0.025)
    assert math.isclose(learning_rate(50, steps, lr), lr)              # ramp-up done at 5 %
    assert math.isclose(learning_rate(500, steps, lr), lr)
    assert math.isclose(learning_rate(875, steps, lr), lr * 0.5, rel_tol=1e-9)  # cosine, mid-ramp-down
    assert learning_rate(999, steps, lr) < 1e-3 * lr
    assert math.isclose(w_noise_scale(0, steps, 2.0), 2.0 * 0.05)
    assert math.isclose(w_noise_scale(375, steps, 2.0), 2.0 * 0.05 * 0.25)
    assert w_noise_scale(750, steps, 2.0) == 0.0 and w_noise_scale(900, steps, 2.0) == 0.0


def test_w_stats_are_the_sampled_mean_and_rms_distance(smoke, one_thread):
    G, _, _ = smoke
    w_avg, w_std = w_stats(G, samples=500)
    z = torch.from_numpy(np.random.RandomState(123).randn(500, G.z_dim).astype(np.float32))
    with torch.no_grad():
        w = G.mapping(z)[:, 0].double()
    assert torch.allclose(w_avg.double(), w.mean(0), atol=1e-5)
    assert math.isclose(w_std, float((w - w.mean(0)).norm(dim=1).square().mean().sqrt()), rel_tol=1e-6)


def test_projection_recovers_a_generated_image(smoke, one_thread):
    G, ws_true, target = smoke
    state = {k: v.clone() for k, v in G.state_dict().items()}
    out = project(G, target, mse_distance, steps=150, seed=0)
    with torch.no_grad():
        start = mse_distance(G.synthesis(out["w_avg"].expand(2, G.num_ws, -1), noise_mode="const"), target)
        end = mse_distance(G.synthesis(out["ws"], noise_mode="const"), target)
    assert out["ws"].shape == (2, G.num_ws, G.w_dim)
    assert torch.equal(out["ws"][:, 0:1].expand(-1, G.num_ws, -1), out["ws"])   # one w per image
    assert len(out["loss"]) == 150
    assert out["loss"][-1] < 0.1 * out["loss"][0]
    assert (end < 0.1 * start).all(), (start, end)
    assert torch.allclose(out["mse"], end) and torch.allclose(out["distance"], end)
    # the generator is untouched: same weights and buffers, eval mode, no parameter gradients
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items())
    assert not G.training and all(p.grad is None for p in G.parameters())


def test_w_plus_shape_and_mse_weight(smoke, one_thread):
    G, _, target = smoke
    out = project(G, target[:1], mse_distance, steps=12, w_plus=True, mse_weight=0.5)
    assert out["ws"].shape == (1, G.num_ws, G.w_dim)
    assert not torch.equal(out["ws"][:, 0], out["ws"][:, 1])            # rows move separately
    assert len(out["loss"]) == 12
    single = project(G, target[0], mse_distance, steps=2)                # (3, R, R) target
    assert single["ws"].shape == (1, G.num_ws, G.w_dim)


def test_projection_is_deterministic_given_the_seed(smoke, one_thread):
    G, _, target = smoke
    a = project(G, target, mse_distance, steps=20, seed=3)
    b = project(G, target, mse_distance, steps=20, seed=3)
    c = project(G, target, mse_distance, steps=20, seed=4)
    assert torch.equal(a["ws"], b["ws"]) and a["loss"] == b["loss"]
    assert not torch.equal(a["ws"], c["ws"])                             # the w noise differs


def test_batched_projection_is_per_image(smoke, one_thread):
    """Without the w noise (the only batch-shaped random draw) projecting two images together
    gives what projecting each alone gives."""
    import copy
    G, _, target = smoke
    G = copy.deepcopy(G).double()     # float32 rounding differs with the batch and is amplified
    both = project(G, target, mse_distance, steps=30, initial_noise_factor=0.0)
    for i in range(2):
        one = project(G, target[i:i + 1], mse_distance, steps=30, initial_noise_factor=0.0)
        assert torch.allclose(both["ws"][i], one["ws"][0], atol=1e-8)


def test_distance_must_be_differentiable(smoke, one_thread):
    G, _, target = smoke

    def frozen(a, b):
        with torch.no_grad():
            return mse_distance(a, b)

    with pytest.raises(ValueError, match="differentiable"):
        project(G, target, frozen, steps=2)
    assert not G.training


def test_projection_runs_in_the_generators_dtype(smoke, one_thread):
    """A float64 copy of G projects in float64 (the target is cast), follows the same path as
    float32 over a few steps, and a last-bit change of the target stays in the last bits."""
    import copy
    G, _, target = smoke
    G64 = copy.deepcopy(G).double()
    a = project(G64, target, mse_distance, steps=10, seed=1)
    b = project(G64, target.double() * (1 + 1e-13), mse_distance, steps=10, seed=1)
    f = project(G, target, mse_distance, steps=10, seed=1)
    assert a["ws"].dtype == torch.float64 and a["distance"].dtype == torch.float64
    assert torch.allclose(a["ws"], b["ws"], rtol=0, atol=1e-9)
    assert torch.allclose(a["ws"].float(), f["ws"], atol=1e-3)


def test_feature_distance_follows_its_networks_dtype(one_thread):
    import copy
    from ssl_lab.metrics.ppl import feature_distance
    from ssl_lab.nets.backbones import Backbone
    torch.manual_seed(0)
    net = Backbone("test_resnet").eval()
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    d32 = feature_distance(net)(x, y)
    d64 = feature_distance(copy.deepcopy(net).double())(x, y)
    assert d32.dtype == torch.float32 and d64.dtype == torch.float64
    assert torch.allclose(d64.float(), d32, rtol=1e-4)
