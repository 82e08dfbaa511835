"""Full-scale metric networks through the field's libraries (issue 13, item 8), offline.

:func:`ssl_lab.nets.extractors.fid_inception` (torch-fidelity's FID Inception-v3) and
:func:`ssl_lab.nets.extractors.lpips_vgg` (the lpips package's LPIPS-VGG) are exercised with
random-weight files written to a temporary folder: a torch-fidelity InceptionV3 state dict
built without downloading and a random ``torchvision.models.vgg16().state_dict()``. Every
download entry point is replaced by one that fails, so a test that tried to download fails.
Our Frechet distance is checked against torch-fidelity's own.
"""
import os

import lpips
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from ssl_lab.metrics.fid import fd_from_features, frechet_distance, gaussian_stats, metric_name
from ssl_lab.nets.extractors import (FID_INCEPTION_WEIGHTS, VGG16_WEIGHTS, FrozenFeatures, _Frozen,
                                     fid_inception, lpips_vgg)


def _no_download(*args, **kwargs):
    raise AssertionError(f"a download was attempted: {args[:1]}")


@pytest.fixture(scope="module", autouse=True)
def no_downloads():
    import torch.hub
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    import torchvision.models._api as tv_api

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "load_state_dict_from_url", _no_download)
        mp.setattr(torch.hub, "download_url_to_file", _no_download)
        mp.setattr(tfi, "load_state_dict_from_url", _no_download)
        mp.setattr(tv_api, "load_state_dict_from_url", _no_download)
        yield


class _RandomInception(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 left at its random initialisation (its constructor always
    loads weights: from the URL, or from the path given, which here holds an empty dict)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        assert state_dict == {}


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fid")
    empty = folder / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(0)
    net = _RandomInception("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    for m in net.modules():          # He init: the default one shrinks the 2048-d features to ~1e-8
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    sd = net.state_dict()
    # non-default BN statistics, so that loading them is visible
    for k, v in sd.items():
        if k.endswith("running_mean"):
            v.uniform_(-0.1, 0.1)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
    path = folder / FID_INCEPTION_WEIGHTS
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(1)
    sd = torchvision.models.vgg16().state_dict()           # random init, classifier included
    path = tmp_path_factory.mktemp("vgg") / VGG16_WEIGHTS
    torch.save(sd, path)
    return path, {k: v for k, v in sd.items() if k.startswith("features.")}


@pytest.fixture(scope="module")
def lpips_net(vgg_file):
    return lpips_vgg(vgg_file[0])


def _images(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# --- the shared frozen base ---------------------------------------------------------------

def test_one_frozen_base_for_all_wrappers(inception_file, lpips_net, one_thread):
    fid_net = fid_inception(inception_file[0])
    for net in (fid_net, lpips_net):
        assert isinstance(net, _Frozen)
    assert issubclass(FrozenFeatures, _Frozen)
    # the pattern is defined once: no wrapper re-implements train() or forward()
    for cls in (FrozenFeatures, type(fid_net), type(lpips_net)):
        assert "train" not in vars(cls) and "forward" not in vars(cls)


# --- FID Inception (torch-fidelity) -------------------------------------------------------

def test_fid_inception_loads_local_weights(inception_file):
    path, sd = inception_file
    net = fid_inception(path)
    assert net.name == "inception-fid" and metric_name(net.name) == "FID"
    loaded = net.inception.state_dict()
    assert loaded.keys() == sd.keys()
    for k in sd:
        assert torch.equal(loaded[k], sd[k]), k
    assert not net.training and not net.inception.training
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())


def test_fid_inception_features(inception_file, one_thread):
    net = fid_inception(inception_file[0])
    g = torch.Generator().manual_seed(2)
    u8 = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g)
    x = (u8.float() / 127.5 - 1).requires_grad_(True)       # exactly the [-1, 1] images of u8

    f1 = net(x)
    assert f1.shape == (2, 2048) and f1.dtype == torch.float32
    assert torch.isfinite(f1).all() and not f1.requires_grad
    assert (f1 >= 0).all() and (f1 > 0).any()               # post-ReLU average pool
    assert (f1[0] - f1[1]).abs().max() > 1e-3 * f1.abs().max()   # different images, features
    # the [-1, 1] -> 0..255 conversion: torch-fidelity's extractor on the uint8 images directly
    assert torch.equal(f1, net.inception(u8)[0])
    # quantisation: a perturbation below half a grey level does not change the features
    f2 = net((x + 0.3 / 127.5 * torch.randn_like(x).clamp(-1, 1)).clamp(-1, 1))
    assert torch.equal(f1, f2)                             # deterministic, and quantised


def test_fid_inception_missing_weights_is_clear():
    for bad in (None, "/nonexistent/dir/" + FID_INCEPTION_WEIGHTS):
        with pytest.raises(FileNotFoundError) as err:
            fid_inception(bad)
        msg = str(err.value)
        assert FID_INCEPTION_WEIGHTS in msg and "download" in msg
    assert "/nonexistent/dir/" in msg


def test_fid_inception_file_that_does_not_fit(tmp_path, one_thread):
    path = tmp_path / "not_inception.pth"
    torch.save({"foo": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="does not fit"):
        fid_inception(path)


# --- LPIPS-VGG (lpips) --------------------------------------------------------------------

def test_lpips_vgg_loads_local_trunk_and_bundled_linear_layers(vgg_file, lpips_net):
    features = vgg_file[1]
    trunk = lpips_net.lpips.net
    for slice_name, idx in (("slice1", 0), ("slice2", 7), ("slice3", 14), ("slice5", 28)):
        conv = getattr(getattr(trunk, slice_name), str(idx))   # lpips keeps torchvision's indices
        assert torch.equal(conv.weight, features[f"features.{idx}.weight"])
        assert torch.equal(conv.bias, features[f"features.{idx}.bias"])
    bundled = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "vgg.pth"),
                         map_location="cpu", weights_only=True)
    sd = lpips_net.lpips.state_dict()
    assert sorted(bundled) == [f"lin{i}.model.1.weight" for i in range(5)]
    for k, v in bundled.items():
        assert torch.equal(sd[k], v), k
    assert lpips_net.name == "lpips-vgg"
    assert all(not p.requires_grad for p in lpips_net.parameters())


def test_lpips_vgg_distance(lpips_net, one_thread):
    a, b = _images(3, 64, 3), _images(3, 64, 4)
    a.requires_grad_(True)
    lpips_net.train()                                       # stays eval: dropout never on
    assert not any(m.training for m in lpips_net.modules())
    d_ab = lpips_net(a, b)
    assert d_ab.shape == (3,) and not d_ab.requires_grad
    assert (d_ab > 0).all()
    assert torch.equal(lpips_net(a, a), torch.zeros(3))
    assert torch.allclose(lpips_net(b, a), d_ab, rtol=1e-6, atol=0)
    assert torch.equal(lpips_net(a, b), d_ab)               # deterministic
    # a smaller change is a smaller distance
    near = (a.detach() + 0.05 * (b - a.detach())).clamp(-1, 1)
    assert (lpips_net(a, near) < d_ab).all()
    with pytest.raises(ValueError):
        lpips_net(a, b[:, :, :32, :32])
    # in float64 (a PPL every CPU computes alike): the same distance to float32's precision
    import copy
    net64 = copy.deepcopy(lpips_net).to(torch.float64)
    d64 = net64(a.detach(), b)
    assert d64.dtype == torch.float64
    torch.testing.assert_close(d64.float(), d_ab, rtol=1e-4, atol=0)


def test_lpips_vgg_custom_linear_weights(vgg_file, lpips_net, tmp_path, one_thread):
    lins = {k: v for k, v in lpips_net.lpips.state_dict().items()
            if k.startswith("lin") and not k.startswith("lins.")}
    path = tmp_path / "lins_x2.pth"
    torch.save({k: 2 * v for k, v in lins.items()}, path)
    doubled = lpips_vgg(vgg_file[0], lpips_weights=path)
    a, b = _images(2, 48, 5), _images(2, 48, 6)
    # LPIPS is linear in its linear-layer weights
    torch.testing.assert_close(doubled(a, b), 2 * lpips_net(a, b), rtol=1e-5, atol=0)

    incomplete = tmp_path / "lins_incomplete.pth"
    torch.save({k: v for k, v in lins.items() if k != "lin4.model.1.weight"}, incomplete)
    with pytest.raises(ValueError, match="lin4"):
        lpips_vgg(vgg_file[0], lpips_weights=incomplete)


def test_lpips_vgg_missing_files_are_clear(vgg_file, tmp_path):
    for bad in (None, tmp_path / VGG16_WEIGHTS):
        with pytest.raises(FileNotFoundError) as err:
            lpips_vgg(bad)
        assert VGG16_WEIGHTS in str(err.value) and "download" in str(err.value)
    with pytest.raises(FileNotFoundError, match="vgg.pth"):
        lpips_vgg(vgg_file[0], lpips_weights=tmp_path / "no_lins.pth")


def test_lpips_vgg_not_a_vgg_file(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="VGG-16"):
        lpips_vgg(path)


# --- our Frechet distance against torch-fidelity's -----------------------------------------

@pytest.mark.parametrize("n,d", [(400, 16), (300, 64)])
def test_frechet_distance_matches_torch_fidelity(n, d):
    g = torch.Generator().manual_seed(n + d)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    a = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix
    b = 1.3 * torch.randn(n + 50, d, generator=g, dtype=torch.float64) @ mix.T + 0.2
    ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b),
                                   verbose=False)["frechet_inception_distance"]
    ours = fd_from_features(a, b)
    assert ref > 0.1
    assert ours == pytest.approx(ref, rel=1e-6)
    # the same from the statistics: ours equal torch-fidelity's (np.mean, np.cov)
    s = fid_features_to_statistics(a)
    mu, sigma = gaussian_stats(a)
    assert torch.allclose(mu, torch.from_numpy(s["mu"]), rtol=1e-12, atol=1e-12)
    assert torch.allclose(sigma, torch.from_numpy(s["sigma"]), rtol=1e-10, atol=1e-12)
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(a)) == pytest.approx(0, abs=1e-9)
