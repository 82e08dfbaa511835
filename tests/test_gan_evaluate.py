"""The HSR chapters' generator report: its parts agree with the metric functions."""
import torch

from ssl_lab.gan.evaluate import evaluate, interpolate, path_lengths, sample
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
        assert torch.allclose(rep["ppl_ws_end"][:16], ends)
        a = G.synthesis(rep["ppl_ws"][:16], noise_mode="const")
        b = G.synthesis(rep["ppl_ws"][:16] + 1e-4 * (ends - rep["ppl_ws"][:16]), noise_mode="const")
    assert torch.allclose(rep["ppl_samples"][:16], (_distance(a, b) / 1e-8).double(), rtol=1e-3)
    again = evaluate(G, real, _features, _distance, n=40, n_ppl=24, seed=3, batch=16)
    assert again["PPL"] == rep["PPL"]                                           # seeded


def test_ppl_in_float64(one_thread):
    """``ppl_dtype=torch.float64``: PPL's latents, images and distances in float64 (the same
    draws as in float32, so the two agree to float32's round-off, magnified by 1 / eps^2); the
    generator given is not changed; FD and the samples stay float32."""
    torch.manual_seed(0)
    G, _ = build("smoke")
    G.eval()
    real = torch.rand(40, 3, 32, 32)
    r32 = evaluate(G, real, _features, _distance, n=40, n_ppl=24, seed=3, batch=16)
    r64 = evaluate(G, real, _features, _distance, n=40, n_ppl=24, seed=3, batch=16, ppl_dtype=torch.float64)
    assert next(G.parameters()).dtype == torch.float32 and r64["fake"].dtype == torch.float32
    assert r64["ppl_ws"].dtype == torch.float64 and r64["FD_colour-stats"] == r32["FD_colour-stats"]
    torch.testing.assert_close(r64["ppl_ws"].float(), r32["ppl_ws"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r64["ppl_samples"], r32["ppl_samples"], rtol=2e-2, atol=0)
    # the float64 path, by hand: the first start point and its step towards its end point
    g = torch.Generator().manual_seed(3 + 1)
    z = torch.randn(32, G.z_dim, generator=g).double()
    G64 = build("smoke")[0].eval().double()
    G64.load_state_dict(G.state_dict())
    with torch.no_grad():
        w0, w1 = G64.mapping(z[:16]), G64.mapping(z[16:32])
        a = G64.synthesis(w0, noise_mode="const")
        b = G64.synthesis(w0 + 1e-4 * (w1 - w0), noise_mode="const")
    torch.testing.assert_close(r64["ppl_samples"][:16], _distance(a, b) / 1e-8, rtol=1e-9, atol=0)


def test_path_lengths_are_evaluates_and_interpolate_walks_them(one_thread):
    torch.manual_seed(0)
    G, _ = build("smoke")
    G.eval()
    rep = evaluate(G, torch.rand(8, 3, 32, 32), _features, _distance, n=8, n_ppl=20, seed=5, batch=8)
    pl = path_lengths(G, _distance, n=20, seed=5, batch=8)
    assert pl["PPL"] == rep["PPL"] and torch.equal(pl["ppl_samples"], rep["ppl_samples"])
    assert pl["ppl_ws"].shape == pl["ppl_ws_end"].shape == (20, *rep["ppl_ws"].shape[1:])
    w0, w1 = pl["ppl_ws"][:3], pl["ppl_ws_end"][:3]
    strip = interpolate(G, w0, w1, steps=5)
    assert strip.shape == (3, 5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(strip[:, 0], G.synthesis(w0, noise_mode="const"))       # the ends,
        torch.testing.assert_close(strip[:, -1], G.synthesis(w1, noise_mode="const"))
        torch.testing.assert_close(strip[:, 2], G.synthesis((w0 + w1) / 2, noise_mode="const"),  # the middle
                                   rtol=1e-5, atol=1e-5)


def test_gate_report_curve_starts_at_the_untrained_generator(one_thread):
    from ssl_lab.gan.evaluate import gate_report
    from ssl_lab.gan.train import gan_config, train_gan
    TINY = dict(resolution=16, z_dim=8, w_dim=8, channel_base=64, channel_max=8, mapping_layers=2, mbstd_group=4)
    real = torch.rand(16, 3, 16, 16)
    art = train_gan(real, gan_config("smoke", arch=TINY, batch=4), steps=4, progress=False, seed=2,
                    keep_state=True, snapshots=2)
    rep = gate_report(art, real, _features, n=16)
    assert [p["kimg"] for p in rep["fd_curve"]] == [0, 0.008, 0.016]
    # kimg 0 is the generator train_gan starts from (seed 2), the last point the final EMA
    torch.manual_seed(2)
    G0, _ = build(TINY)
    f_real = _features(real * 2 - 1)
    assert rep["fd_curve"][0]["FD_colour-stats"] == fd_from_features(f_real, _features(sample(G0.eval(), 16)))
    G1, _ = build(TINY)
    G1.load_state_dict(art["G_ema"])
    assert rep["fd_curve"][-1]["FD_colour-stats"] == fd_from_features(f_real, _features(sample(G1.eval(), 16)))
    assert 0 <= rep["precision"] <= 1 and 0 <= rep["recall"] <= 1
    assert [g["gate"] for g in rep["gates"]] == ["G1 precision", "G2 recall", "G3 FD falls"]
    assert rep["gate_eval"] == dict(features="colour-stats", samples=16, real=16, k=3)
    # a branch continues the warm-up's curve with its own final generator
    branch = train_gan(real, gan_config("smoke", arch=TINY, batch=4), steps=2, progress=False, resume=art)
    rb = gate_report(branch, real, _features, n=16, before=rep["fd_curve"])
    assert rb["fd_curve"][:3] == rep["fd_curve"] and rb["fd_curve"][-1]["kimg"] == 0.024
    G2, _ = build(TINY)
    G2.load_state_dict(branch["G_ema"])
    f_fake = _features(sample(G2.eval(), 16))
    assert rb["fd_curve"][-1]["FD_colour-stats"] == fd_from_features(f_real, f_fake)
    assert rb["precision"] == rb["fd_curve"][-1]["precision"]
    assert [g["gate"] for g in rb["gates"]] == ["G1 precision", "G2 recall", "G3 FD falls"]


def test_sampling_noise_is_evaluate_over_seeds_and_held_out_reference(one_thread):
    from ssl_lab.gan.evaluate import held_out_reference, sampling_noise
    from ssl_lab.metrics.prdc import precision_recall
    torch.manual_seed(0)
    G, _ = build("smoke")
    G.eval()
    real = torch.rand(24, 3, 32, 32)
    noise = sampling_noise(G, real, _features, _distance, seeds=(1, 2, 3), n=24, n_ppl=16, batch=8)
    assert sorted(noise["runs"]) == [1, 2, 3]
    rep = evaluate(G, real, _features, _distance, n=24, n_ppl=16, seed=2, batch=8)
    assert noise["runs"][2] == {"FD_colour-stats": rep["FD_colour-stats"], "precision": rep["precision"],
                                "recall": rep["recall"], "PPL": rep["PPL"]}
    fds = torch.tensor([noise["runs"][s]["FD_colour-stats"] for s in (1, 2, 3)], dtype=torch.float64)
    assert abs(noise["mean"]["FD_colour-stats"] - float(fds.mean())) < 1e-9
    assert abs(noise["sd"]["FD_colour-stats"] - float(fds.std())) < 1e-9 and noise["sd"]["PPL"] > 0
    # a held-out copy of the training images is a perfect generator: FD 0, precision = recall = 1
    ref = held_out_reference(real, real.clone(), _features)
    assert abs(ref["FD_colour-stats"]) < 1e-6 and ref["precision"] == ref["recall"] == 1.0
    f = _features(real * 2 - 1)
    assert held_out_reference(real, real.flip(0)[:10], _features)["precision"] == \
        precision_recall(f, f.flip(0)[:10], k=3)["precision"]
