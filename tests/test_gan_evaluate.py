"""The HSR chapters' generator report: its parts agree with the metric functions."""
import torch

from ssl_lab.gan.evaluate import evaluate, sample
from ssl_lab.metrics.fid import fd_from_features
from ssl_lab.metrics.ppl import filtered_mean
from ssl_lab.nets.stylegan2 import build


def _features(x):
    return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)        # 6-d colour statistics


_features.name = "colour-stats"


def _distance(a, b):
    return (a - b).pow(2).mean((1, 2, 3))


_distance.name = "mse"


def test_evaluate_agrees_with_the_metric_functions(one_thread):
    torch.manual_seed(0)
    G, _ = build("smoke")
    G.eval()
    real = torch.rand(40, 3, 32, 32)
    rep = evaluate(G, real, _features, _distance, n=40, n_ppl=24, seed=3, batch=16)
    fake = sample(G, 40, seed=3, batch=16)
    assert torch.equal(rep["fake"], fake) and fake.shape == (40, 3, 32, 32)
    assert abs(rep["FD_colour-stats"] - fd_from_features(_features(real * 2 - 1), _features(fake))) < 1e-6
    assert 0 <= rep["precision"] <= 1 and 0 <= rep["recall"] <= 1
    assert rep["ppl_samples"].shape == (24,) and abs(rep["PPL"] - filtered_mean(rep["ppl_samples"])) < 1e-9
    assert rep["mahalanobis"].shape == (40,) and (rep["mahalanobis"] >= 0).all()
    # ppl_ws are the start points path_length drew: per batch of 16, 16 starts then 16 ends
    g = torch.Generator().manual_seed(3 + 1)
    z = torch.randn(32, G.z_dim, generator=g)
    with torch.no_grad():
        assert torch.allclose(rep["ppl_ws"][:16], G.mapping(z[:16]))
        ends = G.mapping(z[16:32])
        a = G.synthesis(rep["ppl_ws"][:16], noise_mode="const")
        b = G.synthesis(rep["ppl_ws"][:16] + 1e-4 * (ends - rep["ppl_ws"][:16]), noise_mode="const")
    assert torch.allclose(rep["ppl_samples"][:16], (_distance(a, b) / 1e-8).double(), rtol=1e-3)
    again = evaluate(G, real, _features, _distance, n=40, n_ppl=24, seed=3, batch=16)
    assert again["PPL"] == rep["PPL"]                                           # seeded
