"""ssl_lab.metrics against hand-checkable cases (tiny tensors; the whole file runs in seconds)."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from ssl_lab.metrics import als, fid, landmarks, outliers, ppl, prdc


# ----------------------------------------------------------------------------- landmarks

def _two_images():
    # image 1: eyes (10, 20) and (30, 20) -> IOD 20.  pred errs by (3, 4) = 5 px at point 2
    #          and by (0, 2) = 2 px at point 3: mean 7 / 5 = 1.4 px = 0.07 IOD = 7.0 %.
    # image 2: eyes (0, 0) and (40, 0) -> IOD 40.  pred errs by (0, 8) = 8 px at point 2:
    #          mean 8 / 5 = 1.6 px = 0.04 IOD = 4.0 %.            mean over images: 5.5 %.
    gt = torch.tensor([[[10, 20], [30, 20], [20, 30], [14, 40], [26, 40]],
                       [[0, 0], [40, 0], [20, 15], [8, 30], [32, 30]]], dtype=torch.float64)
    pred = gt.clone()
    pred[0, 2] += torch.tensor([3.0, 4.0])
    pred[0, 3] += torch.tensor([0.0, 2.0])
    pred[1, 2] += torch.tensor([0.0, 8.0])
    return pred, gt


def test_iod_error_by_hand():
    pred, gt = _two_images()
    mean, per_image = landmarks.iod_error(pred, gt, eyes=(0, 1), per_image=True)
    assert per_image.tolist() == pytest.approx([7.0, 4.0])
    assert mean == pytest.approx(5.5)
    assert landmarks.iod_error(pred, gt) == pytest.approx(5.5)          # 5 points -> eyes (0, 1)
    assert landmarks.iod_error(pred[0], gt[0]) == pytest.approx(7.0)    # a single (K, 2) image
    # hiding point 2 of image 1 leaves 2 px over 4 points = 0.5 px = 2.5 %
    vis = torch.ones(2, 5, dtype=torch.bool)
    vis[0, 2] = False
    assert landmarks.iod_error(pred, gt, visible=vis, per_image=True)[1].tolist() == \
        pytest.approx([2.5, 4.0])


def test_iod_error_68_points_uses_outer_eye_corners():
    gt = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(0)) * 10
    gt[0, 36], gt[0, 45] = torch.tensor([0.0, 0.0]), torch.tensor([50.0, 0.0])
    # every point off by 1 px, IOD = 50 -> 2 %
    assert landmarks.iod_error(gt + torch.tensor([1.0, 0.0]), gt) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="pass eyes"):
        landmarks.iod_error(gt[:, :10], gt[:, :10])
    with pytest.raises(ValueError, match="both be"):
        landmarks.iod_error(gt, gt[:, :5])


def test_pck_by_hand():
    pred, gt = _two_images()
    # relative errors: image 1 [0, 0, .25, .10, 0], image 2 [0, 0, .20, 0, 0]
    assert landmarks.pck(pred, gt, thresholds=(0.05, 0.10, 0.25)) == \
        pytest.approx({0.05: 0.7, 0.10: 0.8, 0.25: 1.0})


def _one_hot_maps(h, w, c=None):
    """Feature map whose cell (i, j) is the one-hot vector of index i * w + j."""
    c = c or h * w
    return torch.eye(c)[: h * w].T.reshape(1, c, h, w)


def test_match_landmarks_one_hot_shifted():
    # 32 px image, 8 x 8 maps (stride 4): cell (i, j) has centre (x, y) = (4j + 1.5, 4i + 1.5)
    ref = _one_hot_maps(8, 8)
    query = torch.roll(ref, shifts=(1, 2), dims=(2, 3))     # content moves down 1, right 2 cells
    kp = torch.tensor([[[21.5, 9.5],        # centre of cell (2, 5)   -> query cell (3, 7)
                        [22.5, 9.5],        # 1 px right: 0.75 (2, 5) + 0.25 (2, 6) -> (3, 7)
                        [1.5, 25.5]]])      # cell (6, 0)             -> query cell (7, 2)
    out = landmarks.match_landmarks(ref, query, kp, image_size=32)
    assert out.tolist() == [[[29.5, 13.5], [29.5, 13.5], [9.5, 29.5]]]


def test_match_landmarks_different_strides():
    # query map 16 x 16 (stride 2) one-hot; reference 8 x 8 (stride 4) whose cell (i, j) carries
    # the code of query cell (2i + 1, 2j + 1).  Ref cell (2, 5), centre (21.5, 9.5), covers image
    # pixels x 20..23, y 8..11 -> query cell (5, 11), centre (11.5 * 2 - .5, 5.5 * 2 - .5).
    query = _one_hot_maps(16, 16)
    ref = query[:, :, 1::2, 1::2]
    out = landmarks.match_landmarks(ref, query, torch.tensor([[[21.5, 9.5]]]), image_size=32)
    assert out.tolist() == [[[22.5, 10.5]]]


def test_correspondence_heatmap_sums_to_one_and_peaks():
    ref = _one_hot_maps(8, 8)
    query = torch.roll(ref, shifts=(1, 2), dims=(2, 3))
    heat = landmarks.correspondence_heatmap(ref, query, torch.tensor([[21.5, 9.5]]),
                                            temperature=0.05, image_size=32)
    assert heat.shape == (1, 8, 8)
    assert float(heat.sum()) == pytest.approx(1.0, abs=1e-5)
    assert divmod(int(heat.flatten().argmax()), 8) == (3, 7)
    # cos sim 1 at the peak, 0 elsewhere: peak mass e^20 / (e^20 + 63)
    assert float(heat[0, 3, 7]) == pytest.approx(math.exp(20) / (math.exp(20) + 63), rel=1e-5)
    multi = landmarks.correspondence_heatmap(ref, query, torch.tensor([[[21.5, 9.5], [1.5, 1.5]]]),
                                             temperature=1.0, image_size=32)
    assert multi.shape == (1, 2, 8, 8) and torch.allclose(multi.sum((2, 3)), torch.ones(1, 2))


# ----------------------------------------------------------------------------- FD

def _scipy_fd(mu1, s1, mu2, s2):
    """The reference computation, directly: ||mu1 - mu2||^2 + Tr(s1 + s2 - 2 sqrtm(s1 s2))."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d in (1, 4, 12):
        a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
        s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
            _scipy_fd(mu1, s1, mu2, s2), rel=1e-8)


def test_frechet_distance_special_cases():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    s = a @ a.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    assert fid.frechet_distance(mu1, s, mu2, s) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-9)
    assert fid.frechet_distance(mu1, s, mu1, s) == pytest.approx(0.0, abs=1e-9)
    # 1-d: (m1 - m2)^2 + (sd1 - sd2)^2 = 4 + 1
    assert fid.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(5.0)


def test_fd_from_features_stats_and_singular_covariance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64)
    mu, sigma = fid.gaussian_stats(x)
    assert mu.dtype == sigma.dtype == torch.float64
    assert np.allclose(sigma.numpy(), np.cov(x.numpy(), rowvar=False))
    # fewer samples than dimensions: singular covariances, still finite, zero on itself
    few = torch.randn(5, 10, generator=g)
    assert fid.fd_from_features(few, few) == pytest.approx(0.0, abs=1e-9)
    assert fid.fd_from_features(few, few + 2.0) == pytest.approx(10 * 4.0, rel=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        fid.gaussian_stats(torch.randn(1, 4))


def test_metric_name_and_labelled_fd():
    assert fid.metric_name("inception-fid") == "FID"
    assert fid.metric_name("byol-r18") == "FD_byol-r18"
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(20, 3, 2, 2, generator=g), torch.randn(20, 3, 2, 2, generator=g) + 1
    name, value = fid.fd(lambda im: im.mean((2, 3)), "toy-mean", real, fake, batch_size=7)
    assert name == "FD_toy-mean"
    assert value == pytest.approx(fid.fd_from_features(real.mean((2, 3)), fake.mean((2, 3))))


# ----------------------------------------------------------------------------- precision / recall

def test_knn_radii_by_hand():
    # points 0, 1, 3, 6 on a line: nearest neighbour distances 1, 1, 2, 3; 2nd: 3, 2, 3, 5
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert prdc.knn_radii(x, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert prdc.knn_radii(x, k=2, chunk=3).tolist() == [3.0, 2.0, 3.0, 5.0]
    # probe 4.5 is inside the ball of 3 (radius 2); probe 10 is in no ball (6 has radius 3)
    assert prdc.inside_manifold(torch.tensor([[4.5], [10.0]]), x, prdc.knn_radii(x, 1)).tolist() \
        == [True, False]


def test_precision_recall_on_gaussians():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    same = prdc.precision_recall(real, fake, chunk=128)
    assert same["precision"] > 0.9 and same["recall"] > 0.9
    far = prdc.precision_recall(real, fake + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}
    # real has two far-apart modes, fake covers one: realistic (precision ~1), half coverage
    two_modes = torch.cat([torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 20])
    one_mode = prdc.precision_recall(two_modes, fake)
    assert one_mode["precision"] > 0.9 and 0.35 < one_mode["recall"] < 0.55


# ----------------------------------------------------------------------------- PPL

def test_slerp_endpoints_unit_norm_and_midpoint():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g,
                                                                          dtype=torch.float64)
    unit = lambda v: v / v.norm(dim=-1, keepdim=True)
    assert torch.allclose(ppl.slerp(a, b, torch.zeros(4, 1)), unit(a))
    assert torch.allclose(ppl.slerp(a, b, torch.ones(4, 1)), unit(b))
    t = torch.rand(4, 1, generator=g, dtype=torch.float64)
    assert torch.allclose(ppl.slerp(a, b, t).norm(dim=-1), torch.ones(4, dtype=torch.float64))
    e1, e2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    assert torch.allclose(ppl.slerp(e1, e2, 0.5), torch.tensor([[1.0, 1.0]]) / math.sqrt(2))


def test_filtered_mean_by_hand():
    # 0..100: 1st percentile ('lower') = 1, 99th ('higher') = 99 -> mean of 1..99 = 50
    assert ppl.filtered_mean(torch.arange(101.0)) == pytest.approx(50.0)
    # 1..100 plus two wild outliers: sorted positions 1.01 -> 1 (lower), 99.99 -> 100 (higher)
    # -> the outliers go, 1..100 stay: mean 50.5 (the plain mean would be 50.5 * 100 / 102)
    values = torch.cat([torch.arange(1.0, 101.0), torch.tensor([-1e6, 1e6])])
    assert ppl.filtered_mean(values) == pytest.approx(50.5)


def _recording_sampler(dim, gen, shape=()):
    seen = []

    def sample(k):
        seen.append(torch.randn(k, *shape, dim, generator=gen, dtype=torch.float64))
        return seen[-1]
    return sample, seen


def _sq_l2(a, b):
    return (a - b).flatten(1).square().sum(1)


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_ppl_linear_generator_in_w(sampling):
    # G(w) = A w and distance ||.||^2: d = ||A (w1 - w0) eps||^2 / eps^2 = ||A (w1 - w0)||^2 for
    # every t and every eps
    g = torch.Generator().manual_seed(0)
    A = torch.randn(12, 3, generator=g, dtype=torch.float64)
    generate = lambda w: (w @ A.T).view(-1, 3, 2, 2)
    for eps in (1e-4, 1e-2):
        sample, seen = _recording_sampler(3, g)
        value, d = ppl.path_length(generate, _sq_l2, sample, n=10, epsilon=eps, space="w",
                                   sampling=sampling, batch=4, rng=torch.Generator().manual_seed(1))
        w0 = torch.cat(seen[0::2])
        w1 = torch.cat(seen[1::2])
        expected = ((w1 - w0) @ A.T).square().sum(1)
        assert d.shape == (10,) and torch.allclose(d, expected, rtol=1e-6)
        assert value == pytest.approx(ppl.filtered_mean(expected), rel=1e-6)


def test_ppl_w_plus_latents_and_z_space_slerp():
    g = torch.Generator().manual_seed(0)
    # W+ latents (k, num_ws, D), G = identity: d = ||w1 - w0||^2 summed over the layers
    sample, seen = _recording_sampler(2, g, shape=(3,))
    _, d = ppl.path_length(lambda w: w[:, None], _sq_l2, sample, n=4, space="w", batch=4)
    assert torch.allclose(d, (seen[1] - seen[0]).square().sum((1, 2)), rtol=1e-6)
    # Z: slerp moves at angular speed theta = angle(z0, z1), so with G = identity d = theta^2
    sample, seen = _recording_sampler(5, g)
    _, d = ppl.path_length(lambda z: z[:, None], _sq_l2, sample, n=6, space="z",
                           sampling="full", batch=6, rng=torch.Generator().manual_seed(2))
    cos = torch.nn.functional.cosine_similarity(seen[0], seen[1], dim=1)
    assert torch.allclose(d, torch.acos(cos).square(), rtol=1e-5)


def test_ppl_face_crop():
    # 64 px: rows 24:56, columns 16:48
    assert ppl.face_crop(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 32, 32)
    g = torch.Generator().manual_seed(0)

    def border_only(w):          # the latent only changes pixels outside the face crop
        img = torch.zeros(w.shape[0], 1, 16, 16, dtype=w.dtype)
        img[:, 0, 0, :3] = w
        return img
    sample, _ = _recording_sampler(3, g)
    assert ppl.path_length(border_only, _sq_l2, sample, n=4, crop=True)[0] == 0.0
    assert ppl.path_length(border_only, _sq_l2, sample, n=4, crop=None)[0] > 0.0
    with pytest.raises(ValueError, match="space"):
        ppl.path_length(border_only, _sq_l2, sample, n=4, space="x")


# ----------------------------------------------------------------------------- ALS

def test_als_zero_for_linear_scores():
    ts = torch.linspace(0, 1, 11)
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(4, 1, 3, generator=g), torch.randn(4, 1, 3, generator=g)
    scores = start + ts[None, :, None] * (end - start)            # (4 paths, 11 steps, 3 attrs)
    out = als.als_from_scores(scores, ts)
    assert out["als"] == pytest.approx(0.0, abs=1e-12)
    assert als.als_released_variant(scores)["als"] == pytest.approx(0.0, abs=1e-12)


def test_als_quadratic_by_hand():
    # one path, t in {0, .5, 1}; attribute 0 scores t^2 (chord: t), attribute 1 scores 2t (linear)
    # Delta(t=.5) = (.25 - .5)^2 = .0625 and Delta(t=1) = 0 for attribute 0; all 0 for attribute 1
    # ALS = (.0625 + 0 + 0 + 0) / (N=2 steps * M=2 attributes) = .015625
    ts = torch.tensor([0.0, 0.5, 1.0])
    scores = torch.stack([ts ** 2, 2 * ts], -1)[None]
    out = als.als_from_scores(scores, ts)
    assert out["als"] == pytest.approx(0.015625)
    assert out["per_attribute"].tolist() == pytest.approx([0.03125, 0.0])
    assert out["per_t"].tolist() == pytest.approx([0.0, 0.03125, 0.0])
    # scale divides the deviation: attribute 0 scaled by 0.5 -> Delta(.5) = (.25 / .5)^2 = .25
    assert als.als_from_scores(scores, ts, scale=[0.5, 1.0])["als"] == pytest.approx(0.25 / 4)
    with pytest.raises(ValueError, match="from 0 to 1"):
        als.als_from_scores(scores, torch.tensor([0.0, 0.5, 0.9]))


def test_als_released_variant_by_hand():
    # paths A = [0, 1, 0] and B = [0, 0, 0], one attribute: deviations A [0, 1, 0], B 0.
    # std over the 6 logits {1, 0 x 5}: sqrt(1/6 * 5/6) = sqrt(5) / 6.  Mean |dev| over paths:
    # [0, .5, 0]; squared and summed over t: .25; / std^2 = .25 * 36 / 5 = 1.8.
    # The thesis formula on the same paths: (1 + 0 + 0 + 0) / (2 paths * 2 steps) = .25.
    scores = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])[..., None]
    assert als.als_released_variant(scores)["als"] == pytest.approx(1.8)
    assert als.als_from_scores(scores)["als"] == pytest.approx(0.25)


def test_als_end_to_end_with_quadratic_classifier():
    # G(w) = w, C(x) = x^2, w0 = 0, w1 = 1: the scores along the path are t^2 (as above)
    w0, w1 = torch.zeros(1, 1), torch.ones(1, 1)
    out = als.als(lambda w: w, lambda x: x ** 2, w0, w1, steps=2)
    assert out["scores"].shape == (1, 3, 1)
    assert out["als"] == pytest.approx(0.0625 / 2)
    linear = als.als(lambda w: w, lambda x: 3 * x - 1, torch.randn(3, 2), torch.randn(3, 2))
    assert linear["ts"].numel() == 11 and linear["als"] == pytest.approx(0.0, abs=1e-10)


def test_generator_als_on_a_linear_and_a_squaring_generator():
    """A generator whose images are affine in w, scored by a linear classifier, has ALS 0 in
    both variants; squaring the w makes the thesis variant the mean of (t^2 - t)^2 (w0, w1)^2."""
    from ssl_lab.nets.stylegan2 import build
    G, _ = build("smoke")
    G.eval()

    class Affine(torch.nn.Module):          # "synthesis": the first 3 w entries as a 3x1x1 image
        def __init__(self, square=False):
            super().__init__()
            self.square = square

        def forward(self, ws, noise_mode="const"):
            x = ws[:, 0, :3]
            return (x ** 2 if self.square else 2 * x + 1)[:, :, None, None]

    classify = lambda img: img.flatten(1)
    G.synthesis = Affine()
    out = als.generator_als(G, classify, n_paths=5, seed=1, steps=4)
    assert out["scores"].shape == (5, 5, 3)
    assert out["thesis"]["als"] == pytest.approx(0.0, abs=1e-9)
    assert out["released"]["als"] == pytest.approx(0.0, abs=1e-9)
    G.synthesis = Affine(square=True)
    sq = als.generator_als(G, classify, n_paths=5, seed=1, steps=4)
    w0, w1 = sq["w0"][:, 0, :3].double(), sq["w1"][:, 0, :3].double()
    # (w0 + t d)^2 - chord = (t^2 - t) d^2 with d = w1 - w0
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    hand = ((ts ** 2 - ts)[None, 1:, None] ** 2 * ((w1 - w0) ** 4)[:, None]).mean()
    assert sq["thesis"]["als"] == pytest.approx(float(hand), rel=1e-5)
    # the same seed gives the same paths
    assert torch.equal(als.latent_paths(G, 5, seed=1)[0], sq["w0"])


# ----------------------------------------------------------------------------- outliers

def test_mahalanobis_identity_is_euclidean_and_diagonal_by_hand():
    g = torch.Generator().manual_seed(0)
    x, mu = torch.randn(6, 4, generator=g), torch.randn(4, generator=g)
    d = outliers.mahalanobis(x, mu, torch.eye(4), reg=0.0)
    assert torch.allclose(d, (x - mu).double().norm(dim=1))
    assert torch.allclose(outliers.mahalanobis(x, mu, torch.eye(4)), d, rtol=1e-5)   # tiny ridge
    # sigma = diag(4, 1): (2, 1) is at sqrt(2^2/4 + 1^2/1) = sqrt(2)
    d2 = outliers.mahalanobis(torch.tensor([[2.0, 1.0]]), torch.zeros(2),
                              torch.diag(torch.tensor([4.0, 1.0])), reg=0.0)
    assert float(d2) == pytest.approx(math.sqrt(2))
    # a singular covariance needs the ridge
    with pytest.raises(ValueError, match="raise reg"):
        outliers.mahalanobis(x[:, :2], torch.zeros(2), torch.zeros(2, 2), reg=0.0)


def test_worst_k():
    assert outliers.worst_k(torch.tensor([0.1, 5.0, 3.0, 9.0]), 2).tolist() == [3, 1]
    assert outliers.worst_k(torch.tensor([0.1, 5.0, 3.0, 9.0]), 1, largest=False).tolist() == [0]


def test_tail_sample():
    v = torch.arange(100.0)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    top = outliers.tail_sample(v, 0.1, 3)                      # ranks 0, 4 (4.5 rounds to even), 9 of the top 10
    assert v[top].tolist() == [99.0, 95.0, 90.0]
    assert v[outliers.tail_sample(v, 0.1, 2, largest=False)].tolist() == [0.0, 9.0]
    assert v[outliers.tail_sample(v, 0.01, 3)].tolist() == [99.0, 98.0, 97.0]     # the tail holds at least k
    with pytest.raises(ValueError):
        outliers.tail_sample(v, 0.1, 0)


def test_matching_benchmark_is_exact_with_positional_features_and_scores_a_shift():
    from ssl_lab.metrics.landmarks import matching_benchmark
    S = 16
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    onehot = torch.nn.functional.one_hot(yy * S + xx, S * S).permute(2, 0, 1).float()     # (S*S, S, S)
    images = torch.zeros(4, 3, S, S)
    kp = torch.tensor([[2.0, 3.0], [10.0, 3.0], [6.0, 8.0], [3.0, 12.0], [9.0, 12.0]]).expand(4, 5, 2)
    pairs = torch.tensor([[0, 1], [2, 3]])
    exact = matching_benchmark(lambda x: onehot.expand(len(x), -1, -1, -1), images, kp, pairs, upsample=False)
    assert exact["iod"] == 0.0 and exact["pck"][0.05] == 1.0
    # query features shifted one pixel right: every prediction lands 1 px off; IOD = 8 px.
    # The query images (1, 3) are marked by their pixel value; the features roll by it.
    images[[1, 3]] = 1.0
    shifted = lambda x: torch.stack([torch.roll(onehot, int(v), dims=2) for v in x[:, 0, 0, 0]])
    res = matching_benchmark(shifted, images, kp, pairs, batch=1, upsample=False)
    assert abs(res["iod"] - 100 * 1 / 8) < 1e-9                       # 12.5 % of IOD
    assert res["pck"][0.10] == 0.0 and res["pck"][0.05] == 0.0


def test_matching_benchmark_upsamples_coarse_query_maps():
    from ssl_lab.metrics.landmarks import matching_benchmark
    # features = smooth (x, y) ramps at stride 4: exact matches need the upsampled query map
    S = 32
    g = (torch.arange(S // 4) * 4 + 1.5) / S
    ramp = torch.stack(torch.meshgrid(g, g, indexing="xy"))              # (2, 8, 8): x, y
    feats = lambda x: torch.cat([ramp, 1 - ramp, torch.ones(1, S // 4, S // 4)]).expand(len(x), -1, -1, -1)
    kp = torch.tensor([[9.0, 10.0], [21.0, 10.0], [14.0, 17.0], [11.0, 23.0], [20.0, 23.0]]).expand(2, 5, 2)
    images, pairs = torch.zeros(2, 3, S, S), torch.tensor([[0, 1]])
    coarse = matching_benchmark(feats, images, kp, pairs, upsample=False)["iod"]
    fine = matching_benchmark(feats, images, kp, pairs, upsample=True)["iod"]
    assert fine < coarse and fine < 5.0


def test_cluster_purity_and_nmi_on_hand_cases():
    from ssl_lab.metrics import clusters
    labels = np.array([0, 0, 0, 1, 1, 2])
    # cluster 0 = {0,0,1} (majority 0: 2), cluster 1 = {0,1,2} (majority: 1 of 3 -> 1)
    assert clusters.purity(np.array([0, 0, 1, 0, 1, 1]), labels) == 3 / 6
    perfect = clusters.score(np.array([5, 5, 5, 2, 2, 7]) % 4, labels)   # a relabelling
    assert perfect["purity"] == 1.0 and abs(perfect["nmi"] - 1.0) < 1e-12
    assert clusters.score(np.zeros(6, dtype=int), labels)["nmi"] == 0.0


def test_pixel_features_and_kmeans_recover_planted_parts():
    from ssl_lab.metrics import clusters
    torch.manual_seed(0)
    parts = torch.zeros(2, 8, 8, dtype=torch.long)
    parts[:, 4:] = 1
    parts[:, :, 6:] = 2
    centres = torch.eye(3, 5)
    feats = centres[parts].permute(0, 3, 1, 2) + 0.05 * torch.randn(2, 5, 8, 8)
    x, lab = clusters.pixel_features(feats, parts)
    assert x.shape == (128, 5) and lab.shape == (128,)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(128))
    _, assigned = clusters.kmeans_parts(x, k=3, seed=0)
    assert clusters.score(assigned, lab.numpy())["purity"] == 1.0


def test_copy_baseline_predicts_the_reference_positions():
    from ssl_lab.metrics.landmarks import copy_baseline
    lm = torch.tensor([[[10., 20.], [30., 20.], [20., 30.], [12., 40.], [28., 40.]],
                       [[10., 22.], [30., 22.], [20., 32.], [12., 42.], [28., 42.]]])
    res = copy_baseline(lm, torch.tensor([[0, 1]]))
    # every point is 2 px off, IOD 20 -> 10 %
    assert abs(res["iod"] - 10.0) < 1e-9 and res["pck"][0.10] == 1.0 and res["pck"][0.05] == 0.0


def test_position_features_cluster_into_image_regions():
    from ssl_lab.metrics import clusters
    pos = clusters.position_features(2, 4, 6)
    assert pos.shape == (2, 2, 4, 6)
    assert torch.allclose(pos[0, 0, 0], (torch.arange(6) + 0.5) / 6 * 2 - 1)     # x along a row
    assert torch.allclose(pos[0, 1, :, 0], (torch.arange(4) + 0.5) / 4 * 2 - 1)  # y down a column
    parts = torch.zeros(2, 4, 6, dtype=torch.long)
    parts[:, :, 3:] = 1                                                          # left / right halves
    x, lab = clusters.pixel_features(pos, parts, normalize=False)
    _, assigned = clusters.kmeans_parts(x, k=2, seed=0)
    assert clusters.score(assigned, lab.numpy())["nmi"] > 0.99


def test_feature_distance_is_an_uncalibrated_lpips(one_thread):
    from ssl_lab.metrics.ppl import feature_distance
    from ssl_lab.nets.backbones import Backbone
    torch.manual_seed(0)
    net = Backbone("resnet18").eval()
    d = feature_distance(net)
    a, b = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.allclose(d(a, a), torch.zeros(3), atol=1e-6)
    assert torch.allclose(d(a, b), d(b, a), atol=1e-6) and (d(a, b) > 0).all()
    # by hand for one level: unit vectors u, v -> sum_c (u - v)^2 = 2 - 2 cos, mean over positions
    fa, fb = net((a + 1) / 2)[4], net((b + 1) / 2)[4]
    cos = torch.nn.functional.cosine_similarity(fa, fb, dim=1)
    assert torch.allclose(feature_distance(net, levels=(4,))(a, b), (2 - 2 * cos).mean((1, 2)), atol=1e-4)
    assert d.name == "lpips-uncalibrated-resnet18"
    # input_size: both images are resized first, as the network saw them in training
    up = lambda x: torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False,
                                                   antialias=True)
    torch.testing.assert_close(feature_distance(net, input_size=64)(a, b), d(up(a), up(b)))
    # grad=True: the same value, differentiable in the images; the default carries no graph
    x = a.clone().requires_grad_(True)
    assert not d(x, b).requires_grad
    dg = feature_distance(net, grad=True)(x, b)
    torch.testing.assert_close(dg.detach(), d(a, b))
    dg.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_pixel_patches_describe_the_neighbourhood():
    from ssl_lab.metrics.landmarks import pixel_patches
    x = torch.zeros(1, 3, 5, 5)
    x[0, 0, 2, 2] = 1.0                                   # one red pixel in the centre
    f = pixel_patches(x, k=3)
    assert f.shape == (1, 27, 5, 5)
    centre = f[0, :, 2, 2]
    # the centre patch holds the red pixel at its middle (channel 0, offset 4), mean removed
    # (1 - 1/27 there, -1/27 elsewhere), then scaled to unit length: norm^2 = 26/27
    norm = (26 / 27) ** 0.5
    assert abs(centre[4] - (1 - 1 / 27) / norm) < 1e-6 and abs(centre.sum()) < 1e-6
    assert abs(centre.norm() - 1) < 1e-6
    assert torch.allclose(pixel_patches(x + 0.3, k=3)[..., 1:4, 1:4], f[..., 1:4, 1:4], atol=1e-6)
    assert torch.allclose(pixel_patches(2 * x, k=3), f, atol=1e-6)        # contrast does not count
    assert pixel_patches(x.double()).dtype == torch.float64


def test_matching_benchmark_runs_the_features_in_float64_by_default():
    """The default dtype reaches the feature callable (so a float64 network sees float64
    images) and gives the float32 answer on a case without near-ties."""
    from ssl_lab.metrics.landmarks import matching_benchmark
    seen = []
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Conv2d(3, 8, 3, padding=1)
    images = torch.rand(4, 3, 16, 16, generator=g)
    kp = torch.tensor([[[4.0, 5.0], [11.0, 9.0]]]).expand(4, -1, -1)
    pairs = torch.tensor([[0, 0], [1, 1], [2, 3]])
    def feats(x):
        seen.append(x.dtype)
        return net.to(x.dtype)(x)
    r64 = matching_benchmark(feats, images, kp, pairs, eyes=(0, 1))
    r32 = matching_benchmark(feats, images, kp, pairs, eyes=(0, 1), dtype=torch.float32)
    assert seen == [torch.float64, torch.float32]           # each image's map is made once
    assert r64["pred"].dtype == torch.float64 and torch.equal(r64["pred"][:2], kp[:2].double())
    assert torch.allclose(r64["pred"].float(), r32["pred"])


def test_fast_matching_redoes_near_ties_in_float64():
    """``fast``: a float32 map whose best cell leads by less than TIE_MARGIN is not trusted; the
    two images of that pair are described again in float64, whose answer wins. One-hot position
    codes (plus a spare channel); in image 1 the cells (x 0, y 0) and (x 1, y 0) both carry the
    code of (0, 0), one of them tilted by 4.5e-4 along the spare channel (cosine 1 - 1e-7): float32
    tilts (1, 0), float64 tilts (0, 0). The pair of images 2 and 3 is far from any tie."""
    from ssl_lab.metrics.landmarks import TIE_MARGIN, matching_benchmark
    S = 8
    codes = F.one_hot(torch.arange(S * S), S * S + 1).T.reshape(S * S + 1, S, S).double()
    def feats(x):
        m = codes.expand(len(x), -1, -1, -1).clone()
        tie = x[:, 0, 0, 0] > 0.5
        m[tie, 1, 0, 1], m[tie, 0, 0, 1] = 0.0, 1.0                  # cell (x 1, y 0) coded as (0, 0)
        m[tie, S * S, 0, 1 if x.dtype == torch.float32 else 0] = 2e-7 ** 0.5
        return m.to(x.dtype)
    images = torch.zeros(4, 3, S, S)
    images[1, 0, 0, 0] = 1.0
    kp = torch.tensor([[[0.0, 0.0], [5.0, 6.0]]]).expand(4, -1, -1)
    pairs = torch.tensor([[0, 1], [2, 3]])
    assert 1e-7 < TIE_MARGIN
    slow32 = matching_benchmark(feats, images, kp, pairs, upsample=False, eyes=(0, 1), dtype=torch.float32)
    slow = matching_benchmark(feats, images, kp, pairs, upsample=False, eyes=(0, 1))
    fast = matching_benchmark(feats, images, kp, pairs, upsample=False, eyes=(0, 1), fast=True)
    assert slow32["pred"][0, 0].tolist() == [0.0, 0.0] and slow["pred"][0, 0].tolist() == [1.0, 0.0]
    assert torch.equal(fast["pred"], slow["pred"]) and fast["described_twice"] == 2
    assert fast["pred"][1].tolist() == kp[3].tolist()


def test_fast_matching_with_a_dual_precision_network_equals_float64():
    """A small random conv net: ``fast`` (float32, float64 near ties) gives float64's matches
    bit for bit, in both protocols."""
    from ssl_lab.metrics.landmarks import DualPrecision, dve_matching, matching_benchmark
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, padding=1))
    dual = DualPrecision(net)
    assert next(dual.copies[torch.float32].parameters()).dtype == torch.float32
    images = (torch.rand(8, 3, 24, 24) * 255).to(torch.uint8)
    kp = torch.rand(8, 5, 2) * 23
    kp[:, 1, 0] = kp[:, 0, 0] + 6
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7], [1, 0]])
    net64 = dual.copies[torch.float64]
    a = matching_benchmark(net64, images, kp, pairs)
    b = matching_benchmark(dual, images, kp, pairs, fast=True)
    assert torch.equal(a["pred"], b["pred"]) and a["iod"] == b["iod"]
    c, d = dve_matching(net64, images, kp, seed=3), dve_matching(dual, images, kp, seed=3, fast=True)
    assert {k: v for k, v in c.items() if k != "described_twice"} == {k: v for k, v in d.items() if k != "described_twice"}
    with pytest.raises(TypeError):
        dual(images[:1])                                     # uint8: neither precision
    with pytest.raises(TypeError):
        DualPrecision(lambda x: x)                           # not a module's
    from ssl_lab.nets.backbones import Backbone
    hc = DualPrecision(Backbone("resnet18").eval().hypercolumn)
    assert hc.method == "hypercolumn" and hc(torch.rand(1, 3, 32, 32).double()).dtype == torch.float64
    on = DualPrecision(net, "cpu")                           # the device given: images there, maps back
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(on(x), dual(x)) and torch.equal(on(x.double()), dual(x.double()))
    assert on(x).device == x.device


@pytest.mark.parametrize("h, w, H, W", [(4, 4, 16, 16), (12, 12, 48, 48), (5, 7, 23, 30), (16, 16, 64, 64)])
def test_upsampled_similarity_equals_matching_against_the_resized_map(h, w, H, W):
    """The closed form equals building the bilinearly resized query map (the slow form),
    including the clamped borders and non-integer strides; so does its argmax."""
    from ssl_lab.metrics.landmarks import cosine_similarity_maps, upsampled_similarity_maps
    g = torch.Generator().manual_seed(h * w)
    feat = torch.randn(2, 6, h, w, generator=g, dtype=torch.float64)
    desc = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    slow = cosine_similarity_maps(desc, F.interpolate(feat, size=(H, W), mode="bilinear", align_corners=False))
    fast = upsampled_similarity_maps(desc, feat, (H, W))
    assert fast.shape == (2, 3, H, W)
    assert torch.allclose(fast, slow, atol=1e-12, rtol=0)
    best = slow.flatten(2).gather(-1, fast.flatten(2).argmax(-1, keepdim=True))[..., 0]
    assert torch.allclose(best, slow.flatten(2).amax(-1), atol=1e-12, rtol=0)    # the same maximum


def test_upsampled_similarity_by_hand():
    """A 1 x 2 map of orthogonal unit features resized to 1 x 4: pixel centres sit at
    source x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1), so the resized
    features are e0, 0.75 e0 + 0.25 e1, 0.25 e0 + 0.75 e1, e1 and their cosine with e0 is
    1, 0.75 / sqrt(0.625), 0.25 / sqrt(0.625), 0."""
    from ssl_lab.metrics.landmarks import upsampled_similarity_maps
    feat = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64).view(1, 2, 1, 2)
    sim = upsampled_similarity_maps(torch.tensor([[[2.0, 0.0]]], dtype=torch.float64), feat, (1, 4))
    n = 0.625 ** 0.5
    assert torch.allclose(sim.flatten(), torch.tensor([1.0, 0.75 / n, 0.25 / n, 0.0], dtype=torch.float64))


# -- DVE's matching protocol -------------------------------------------------------------------
def test_dve_warp_moves_image_and_keypoints_together_by_hand():
    """A pure translation by 3 px (tx = 6 / (W - 1) in DVE's normalised units): the output
    samples the input 3 px to the right, so content and keypoints move 3 px left."""
    from ssl_lab.metrics.landmarks import _tps_basis, _warp
    H = W = 16
    basis = _tps_basis(H, W)
    weights = torch.zeros(1, 103, 2, dtype=torch.float64)
    weights[0, 100] = torch.tensor([6 / (W - 1), 0.0])
    weights[0, 101:] = torch.eye(2, dtype=torch.float64)
    img = torch.rand(1, 3, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out, kp = _warp(img, torch.tensor([[[10.0, 5.0], [4.2, 7.9]]], dtype=torch.float64), weights, basis)
    torch.testing.assert_close(out[..., :W - 3], img[..., 3:])
    assert torch.equal(kp, torch.tensor([[[7.0, 5.0], [1.0, 8.0]]], dtype=torch.float64))


def test_nearest_cell_match_by_hand():
    """Stride 4: the keypoint (9, 6) takes the descriptor of cell (x 2, y 2) (9 / 4 = 2.25,
    6 / 4 = 1.5 -> 2); its best dot product in the target is cell (x 0, y 1), returned as
    (0, 4) pixels (cell index x stride, DVE's convention)."""
    from ssl_lab.metrics.landmarks import nearest_cell_match
    src = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    src[0, :, 2, 2] = torch.tensor([1.0, 0.0])
    tgt = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    tgt[0, 0, 1, 0], tgt[0, 0, 2, 2] = 3.0, 2.0                         # dot products 3 and 2
    pred = nearest_cell_match(src, tgt, torch.tensor([[[9.0, 6.0]]], dtype=torch.float64), stride=4)
    assert torch.equal(pred, torch.tensor([[[0.0, 4.0]]], dtype=torch.float64))


def test_dve_matching_with_positional_codes_and_no_warp():
    """Without warps and with one-hot position codes as features, a warped copy of itself is
    matched exactly (0 px) and a different identity costs exactly copying the positions."""
    from ssl_lab.metrics.landmarks import copy_baseline, dve_matching
    S = 16
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    onehot = torch.nn.functional.one_hot(yy * S + xx, S * S).permute(2, 0, 1).double()
    g = torch.Generator().manual_seed(1)
    kp = (torch.rand(6, 5, 2, generator=g) * (S - 5)).round().double()   # whole pixels in the image
    kp[:, 1, 0] = kp[:, 0, 0] + 4                                         # eyes apart
    still = dict(warpsd_all=0.0, warpsd_subset=0.0, transsd=0.0, scalesd=0.0, rotsd=0.0)
    r = dve_matching(lambda x: onehot.expand(len(x), -1, -1, -1), torch.rand(6, 3, S, S), kp, warp=still)
    assert r["pairs"] == 3 and r["same_px70"] == 0.0 and r["same_iod"] == 0.0
    copy = copy_baseline(kp, torch.tensor([[0, 1], [2, 3], [4, 5]]))["iod"]
    assert abs(r["different_iod"] - copy) < 1e-9


def test_dve_copy_baseline_is_zero_without_warps_on_the_same_image():
    from ssl_lab.metrics.landmarks import copy_baseline, dve_copy_baseline
    kp = torch.tensor([[[3.0, 4.0], [9.0, 4.0], [6.0, 8.0]], [[2.0, 5.0], [10.0, 6.0], [6.0, 9.0]]])
    still = dict(warpsd_all=0.0, warpsd_subset=0.0, transsd=0.0, scalesd=0.0, rotsd=0.0)
    r = dve_copy_baseline(kp, 16, eyes=(0, 1), warp=still)
    assert r["same_px70"] == 0.0 and abs(r["different_iod"] - copy_baseline(kp, torch.tensor([[0, 1]]), eyes=(0, 1))["iod"]) < 1e-9
    warped = dve_copy_baseline(kp, 16, eyes=(0, 1))                       # DVE's warps move points
    assert warped["same_px70"] > 0


def test_dve_standard_error_over_pairs_by_hand():
    """No warps; pair i's second image is its first shifted by d_i px (all points), so the
    different-identity error of pair i is d_i: mean 2, sd of (1, 2, 3) = 1, se = 1 / sqrt(3),
    in px at 70 of a 14-px image: x 5."""
    from ssl_lab.metrics.landmarks import dve_copy_baseline, matching_row
    still = dict(warpsd_all=0.0, warpsd_subset=0.0, transsd=0.0, scalesd=0.0, rotsd=0.0)
    base = torch.tensor([[3.0, 4.0], [9.0, 4.0], [6.0, 7.0], [4.0, 9.0], [8.0, 9.0]])
    kp = torch.stack([base + torch.tensor([d * k, 0.0]) for d in (1.0, 2.0, 3.0) for k in (0, 1)])
    r = dve_copy_baseline(kp, 14, eyes=(0, 1), warp=still)
    assert abs(r["different_px70"] - 10.0) < 1e-9 and abs(r["different_px70_se"] - 5 / 3 ** 0.5) < 1e-9
    assert r["same_px70_se"] == 0.0
    ids = torch.tensor([0, 0, 0, 1, 1, 1])
    row = matching_row(None, torch.rand(6, 3, 14, 14), kp, torch.ones(6, 5, dtype=torch.bool),
                       torch.tensor([[0, 1]]), pairs=3, identity=ids, se=True)
    assert {"Same s.e.", "Different s.e."} <= set(row) and row["Different s.e."] > 0


def test_standard_error_by_hand_leaves_out_nan():
    """(1, 2, 3): sd 1, se 1 / sqrt(3); a NaN (an image with no visible point) is left out;
    fewer than two values: NaN."""
    from ssl_lab.metrics.landmarks import standard_error
    assert standard_error(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(1 / 3 ** 0.5)
    assert standard_error(torch.tensor([1.0, float("nan"), 3.0, 2.0])) == pytest.approx(1 / 3 ** 0.5)
    assert math.isnan(standard_error(torch.tensor([4.0, float("nan")])))


def test_matching_row_reports_both_units_and_the_new_pose_pairs():
    from ssl_lab.metrics.landmarks import matching_row
    S = 16
    g = torch.Generator().manual_seed(2)
    images = torch.rand(6, 3, S, S, generator=g)
    kp = torch.tensor([[4.0, 5.0], [11.0, 5.0], [7.5, 8.0], [5.0, 11.0], [10.0, 11.0]]).expand(6, -1, -1).clone()
    vis = torch.ones(6, 5, dtype=torch.bool)
    new_pose = torch.tensor([[0, 1], [2, 3]])
    ids = torch.tensor([7, 7, 7, 3, 3, 3])          # stored by identity, as SynthFaces test splits are
    row = matching_row(None, images, kp, vis, new_pose, pairs=2, identity=ids)
    assert set(row) == {"Same", "Different", "Same / % IOD", "Different / % IOD", "same identity, new pose / % IOD"}
    assert row["same identity, new pose / % IOD"] == 0.0                 # identical landmarks everywhere
    # DVE's units: pixels scaled to a 70-px image; IOD here is about 7 px (the warps rescale
    # by a few %), so % IOD is about px * S / 70 / 7 * 100
    assert row["Different"] > 0
    assert abs(row["Different / % IOD"] / (row["Different"] * S / 70 / 7 * 100) - 1) < 0.15
    net = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    learned = matching_row(lambda x: net(x), images, kp, vis, new_pose, pairs=2, identity=ids)
    assert all(v >= 0 for v in learned.values())


def test_matching_row_with_views_warped_once_equals_warping_itself():
    """A table warps its test images once for every network (matching_views); the row must be
    the one matching_row computes on its own, and views of other images are refused."""
    from ssl_lab.metrics.landmarks import matching_row, matching_views
    S = 16
    g = torch.Generator().manual_seed(3)
    images = torch.rand(8, 3, S, S, generator=g)
    kp = (torch.rand(8, 5, 2, generator=g) * (S - 4) + 2)
    vis = torch.ones(8, 5, dtype=torch.bool)
    new_pose = torch.tensor([[0, 1], [2, 3]])
    ids = torch.tensor([1, 1, 2, 2, 3, 3, 4, 4])
    net = torch.nn.Conv2d(3, 4, 3, padding=1).double()
    views = matching_views(images, kp, pairs=3, seed=5, identity=ids)
    own = matching_row(lambda x: net(x), images, kp, vis, new_pose, pairs=3, seed=5, identity=ids, se=True, digits=12)
    shared = matching_row(lambda x: net(x), images, kp, vis, new_pose, pairs=3, seed=5, identity=ids, se=True,
                          digits=12, views=views)
    assert shared == own
    other = matching_views(images, kp, pairs=2, seed=5, identity=ids)
    with pytest.raises(ValueError, match="views of 4 images"):
        matching_row(lambda x: net(x), images, kp, vis, new_pose, pairs=3, seed=5, identity=ids, views=other)


def test_dve_order_pairs_consecutive_images_of_two_identities():
    """SynthFaces stores a test split by identity; DVE pairs consecutive items (MAFL's test
    list holds different people there). Hand case: ids 5 5 5 2 2 8 -> first images of 5, 2,
    8, then the second images of 5, 2, then the third of 5."""
    from ssl_lab.metrics.landmarks import dve_order
    ids = torch.tensor([5, 5, 5, 2, 2, 8])
    order = dve_order(ids)
    assert order.tolist() == [0, 3, 5, 1, 4, 2]
    assert (ids[order][0::2] != ids[order][1::2]).all()
    assert dve_order(ids, pairs=2).tolist() == [0, 3, 5, 1] and dve_order(ids, pairs=9).tolist() == order.tolist()
    with pytest.raises(ValueError, match="two identities"):
        dve_order(torch.tensor([1, 1, 1, 1, 2, 2]))        # 1 1 | 2 1 | 2 1 -> no: (1, 2)(1, 2)(1, 1)


def test_dve_matching_refuses_pairs_of_one_identity():
    from ssl_lab.metrics.landmarks import dve_matching
    kp = torch.tensor([[[3.0, 4.0], [9.0, 4.0]]]).expand(4, -1, -1).clone()
    with pytest.raises(ValueError, match="dve_order"):
        dve_matching(lambda x: x, torch.rand(4, 3, 16, 16), kp, identity=torch.tensor([0, 0, 1, 2]))


def test_nearest_cell_match_normalised_takes_the_cosine_not_the_norm():
    """Source descriptor (1, 0); target cells (3, 3) (dot 3, cosine 0.71) at (x 0, y 0) and
    (1, 0) (dot 1, cosine 1) at (x 1, y 0): the raw dot product takes the large cell, the
    normalised match the parallel one."""
    from ssl_lab.metrics.landmarks import nearest_cell_match
    src = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    src[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    tgt = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    tgt[0, :, 0, 0], tgt[0, :, 0, 1] = torch.tensor([3.0, 3.0]), torch.tensor([1.0, 0.0])
    kp = torch.tensor([[[0.0, 0.0]]], dtype=torch.float64)
    assert nearest_cell_match(src, tgt, kp, stride=4).tolist() == [[[0.0, 0.0]]]
    assert nearest_cell_match(src, tgt, kp, stride=4, normalize=True).tolist() == [[[4.0, 0.0]]]


def test_als_paired_over_seeds_by_hand():
    from ssl_lab.metrics.als import paired_over_seeds
    run = lambda *v: {"thesis": {"per_attribute": torch.tensor(v)}, "released": {"per_attribute": torch.tensor(v) * 10}}
    a, b = [run(1.0, 3.0), run(3.0, 5.0)], [run(2.0, 2.0), run(2.0, 6.0)]     # means 2, 4 and 2, 4
    out = paired_over_seeds(a, b)
    assert out["a"] == pytest.approx((3.0, 2 ** 0.5)) and out["b"] == pytest.approx((3.0, 2 ** 0.5))
    assert out["b - a"] == pytest.approx((0.0, 0.0))                             # paired: no spread
    first = paired_over_seeds(a, b, attributes=[0])                             # a: 1, 3; b: 2, 2
    assert first["b - a"] == pytest.approx((0.0, 2 ** 0.5))
    assert paired_over_seeds(a, b, variant="released")["a"] == pytest.approx((30.0, 10 * 2 ** 0.5))
    with pytest.raises(ValueError, match="one run per sample seed"):
        paired_over_seeds(a, b[:1])
