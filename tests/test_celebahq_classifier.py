"""The StyleGAN release's CelebA-HQ attribute classifiers, read without TensorFlow
(ssl_lab.nets.celebahq_classifier), checked on fake pickles in the release's format: dnnlib
``Network`` states with the build function's source, static kwargs and TF variables."""
import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_lab.nets import celebahq_classifier as cc

# The build functions' signatures with their default arguments (NVlabs/stylegan
# training/networks_stylegan.py D_basic, training/networks_progan.py D_paper), as a pickle's
# build_module_src holds them. The module imports TensorFlow: executing it would fail here.
SOURCE = """import numpy as np
import tensorflow as tf

def D_basic(images_in, labels_in, num_channels=1, resolution=32, label_size=0, fmap_base=8192,
            fmap_decay=1.0, fmap_max=512, nonlinearity='lrelu', use_wscale=True, mbstd_group_size=4,
            mbstd_num_features=1, dtype='float32', fused_scale='auto', blur_filter=[1,2,1],
            structure='auto', is_template_graph=False, **_kwargs):
    raise RuntimeError('never executed')

def D_paper(images_in, labels_in, num_channels=1, resolution=32, label_size=0, fmap_base=8192,
            fmap_decay=1.0, fmap_max=512, use_wscale=True, mbstd_group_size=4, dtype='float32',
            fused_scale=True, structure=None, is_template_graph=False, **_kwargs):
    raise RuntimeError('never executed')
"""
TINY = dict(num_channels=3, resolution=16, fmap_base=64, fmap_max=16)    # nf: 16, 16, 16, 8


def tf_variables(kind: str, kw: dict, seed: int) -> dict:
    """Random TF variables (HWIO convs, [in, out] dense) of the graph ``kind(**kw)`` builds,
    with a FromRGB layer at every lod, as the 'linear' and 'recursive' structures make them."""
    rng = np.random.default_rng(seed)
    nf = lambda stage: min(int(kw["fmap_base"] / 2.0 ** stage), kw["fmap_max"])
    r = int(np.log2(kw["resolution"]))
    mbstd = kw.get("mbstd_num_features", 1) if kw.get("mbstd_group_size", 4) > 1 else 0
    conv1 = "Conv1_down" if kind == "D_basic" or kw.get("fused_scale", True) else "Conv1"
    shapes = {}
    for lod in range(r - 1):
        shapes.update({f"FromRGB_lod{lod}/weight": (1, 1, 3, nf(r - lod - 1)),
                       f"FromRGB_lod{lod}/bias": (nf(r - lod - 1),)})
    for res in range(r, 2, -1):
        s = f"{2**res}x{2**res}"
        shapes.update({f"{s}/Conv0/weight": (3, 3, nf(res - 1), nf(res - 1)), f"{s}/Conv0/bias": (nf(res - 1),),
                       f"{s}/{conv1}/weight": (3, 3, nf(res - 1), nf(res - 2)), f"{s}/{conv1}/bias": (nf(res - 2),)})
    shapes.update({"4x4/Conv/weight": (3, 3, nf(1) + mbstd, nf(1)), "4x4/Conv/bias": (nf(1),),
                   "4x4/Dense0/weight": (nf(1) * 16, nf(0)), "4x4/Dense0/bias": (nf(0),),
                   "4x4/Dense1/weight": (nf(0), 1), "4x4/Dense1/bias": (1,)})
    out = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    out["lod"] = np.float32(0.0)
    return out


def write_tf_pickle(path, kind: str, static_kwargs: dict, variables: dict) -> None:
    """A pickle as dnnlib's ``Network.__getstate__`` writes it (version 3), its class named
    ``dnnlib.tflib.network.Network``; the fake dnnlib modules exist only while it is written."""
    class Network:
        def __init__(self, state):
            self.state = state

        def __getstate__(self):
            return self.state
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods = {n: types.ModuleType(n) for n in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    mods["dnnlib.tflib.network"].Network = Network
    state = dict(version=3, name="D", static_kwargs=dict(static_kwargs), components={},
                 build_module_src=SOURCE, build_func_name=kind, variables=list(variables.items()))
    sys.modules.update(mods)
    try:
        with open(path, "wb") as f:
            pickle.dump(Network(state), f, protocol=4)
    finally:
        for n in mods:
            del sys.modules[n]


# -- an independent forward pass of the TF graph, in numpy (TF layouts and 'SAME' padding) -----
def np_conv(x, w_hwio, stride=1):
    k, h = w_hwio.shape[0], x.shape[2]
    out = -(-h // stride)
    pad = max((out - 1) * stride + k - h, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    return sum(np.einsum("nchw,co->nohw", xp[:, :, i:i + stride * out:stride, j:j + stride * out:stride], w_hwio[i, j])
               for i in range(k) for j in range(k))


def np_forward(kind: str, kw: dict, v: dict, img: np.ndarray) -> np.ndarray:
    v = {n: np.asarray(a, np.float64) for n, a in v.items()}
    slope = 0.0 if kw.get("nonlinearity") == "relu" else 0.2           # D_basic's 'relu' / 'lrelu'
    lrelu = lambda x: np.maximum(x, slope * x)
    scaled = lambda w, gain=math.sqrt(2): w * gain / math.sqrt(np.prod(w.shape[:-1]))
    bias = lambda x, scope: x + v[scope + "/bias"].reshape(1, -1, *[1] * (x.ndim - 2))
    pool = lambda x: x.reshape(*x.shape[:2], x.shape[2] // 2, 2, x.shape[3] // 2, 2).mean((3, 5))
    r = int(np.log2(kw["resolution"]))
    x = lrelu(bias(np_conv(img, scaled(v["FromRGB_lod0/weight"])), "FromRGB_lod0"))
    for res in range(r, 2, -1):
        s = f"{2**res}x{2**res}"
        x = lrelu(bias(np_conv(x, scaled(v[s + "/Conv0/weight"])), s + "/Conv0"))
        if kind == "D_basic" and kw.get("blur_filter", [1, 2, 1]):
            f = np.outer(kw.get("blur_filter", [1, 2, 1]), kw.get("blur_filter", [1, 2, 1])).astype(np.float64)
            eye = np.eye(x.shape[1])[None, None]                       # depthwise = f on the diagonal
            x = np_conv(x, f[:, :, None, None] / f.sum() * eye)
        fused = kw.get("fused_scale", "auto" if kind == "D_basic" else True)
        if fused is True or fused == "auto" and 2 ** res >= 128:
            w = np.pad(scaled(v[s + "/Conv1_down/weight"]), ((1, 1), (1, 1), (0, 0), (0, 0)))
            w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
            x = lrelu(bias(np_conv(x, w, stride=2), s + "/Conv1_down"))
        elif kind == "D_basic":
            x = lrelu(bias(pool(np_conv(x, scaled(v[s + "/Conv1_down/weight"]))), s + "/Conv1_down"))
        else:
            x = pool(lrelu(bias(np_conv(x, scaled(v[s + "/Conv1/weight"])), s + "/Conv1")))
    g = kw.get("mbstd_group_size", 4)
    if g > 1:
        n, c, h, w_ = x.shape
        g, nfeat = min(g, n), kw.get("mbstd_num_features", 1)
        y = x.reshape(g, -1, nfeat, c // nfeat, h, w_)
        y = np.sqrt(((y - y.mean(0, keepdims=True)) ** 2).mean(0) + 1e-8).mean((2, 3, 4))   # [M, n]
        x = np.concatenate([x, np.tile(y[:, :, None, None], (g, 1, h, w_))], 1)
    x = lrelu(bias(np_conv(x, scaled(v["4x4/Conv/weight"])), "4x4/Conv")).reshape(len(x), -1)
    x = lrelu(bias(x @ scaled(v["4x4/Dense0/weight"]), "4x4/Dense0"))
    return bias(x @ scaled(v["4x4/Dense1/weight"], 1.0), "4x4/Dense1")


VARIANTS = {"D_basic fused, blur, mbstd 2 x 2 features": ("D_basic", dict(fused_scale=True, mbstd_group_size=2,
                                                                           mbstd_num_features=2)),
            "D_basic unfused, blur [1,3,3,1], relu": ("D_basic", dict(fused_scale=False, mbstd_group_size=0,
                                                                       blur_filter=[1, 3, 3, 1], nonlinearity="relu")),
            "D_basic auto (unfused at 16 px), no blur": ("D_basic", dict(blur_filter=None, mbstd_group_size=0)),
            "D_basic auto at 128 px (fused at 128 only)": ("D_basic", dict(resolution=128, fmap_max=4)),
            "D_paper fused, mbstd 4": ("D_paper", dict(fused_scale=True)),
            "D_paper unfused": ("D_paper", dict(fused_scale=False, mbstd_group_size=0))}


@pytest.mark.parametrize("variant", VARIANTS)
def test_pytorch_forward_equals_a_numpy_pass_of_the_tf_graph(tmp_path, variant, one_thread):
    """The re-implementation, read from a fake pickle without TensorFlow (nor dnnlib), equals the
    TF graph's numpy pass to 1e-10 in float64, for both build functions and their options."""
    kind, kw = VARIANTS[variant]
    kw = {**TINY, **kw}
    variables = tf_variables(kind, kw, seed=1)
    write_tf_pickle(tmp_path / "clf.pkl", kind, kw, variables)
    before = set(sys.modules)
    clf = cc.load_celebahq_classifier(tmp_path / "clf.pkl")
    assert not any(m.split(".")[0] in ("tensorflow", "dnnlib") for m in set(sys.modules) - before)
    assert not clf.training and clf.name == "clf"
    img = np.random.default_rng(2).uniform(-1, 1, (4, 3, kw["resolution"], kw["resolution"]))
    got = clf.double()(torch.from_numpy(img)).numpy()
    want = np_forward(kind, kw, variables, img)[:, 0]
    assert got.shape == (4,) and np.abs(got - want).max() < 1e-10 * max(1.0, np.abs(want).max())


def test_reader_returns_kwargs_with_the_build_functions_defaults(tmp_path):
    """static_kwargs hold only what was passed; the defaults come from build_module_src, parsed, not run."""
    variables = tf_variables("D_basic", {**TINY, "mbstd_group_size": 0}, seed=0)
    write_tf_pickle(tmp_path / "clf.pkl", "D_basic", {**TINY, "mbstd_group_size": 0}, variables)
    tf = cc.read_tf_pickle(tmp_path / "clf.pkl")
    assert tf["build_func_name"] == "D_basic" and tf["version"] == 3
    assert tf["static_kwargs"] == {**TINY, "mbstd_group_size": 0}
    assert tf["kwargs"]["blur_filter"] == [1, 2, 1] and tf["kwargs"]["fused_scale"] == "auto"
    assert tf["kwargs"]["resolution"] == 16 and tf["kwargs"]["fmap_decay"] == 1.0
    assert set(tf["variables"]) == set(variables)
    assert all(np.array_equal(tf["variables"][n], v) for n, v in variables.items())


def test_conv_and_dense_layouts_and_equalised_lr_by_hand():
    """A 1x1 conv, TF layout [1, 1, in=4, out=3] with w[i, o] = 10 i + o: PyTorch's [out, in, 1, 1],
    times the runtime scale gain / sqrt(fan_in) = sqrt(2) / sqrt(4)."""
    w = torch.tensor([[10.0 * i + o for o in range(3)] for i in range(4)]).reshape(1, 1, 4, 3)
    x = torch.tensor([0.0, 1.0, 0.0, 2.0]).reshape(1, 4, 1, 1)       # 1 x input 1 + 2 x input 3
    out = F.conv2d(x, cc.conv_weight(w, math.sqrt(2), use_wscale=True)).flatten()
    assert torch.allclose(out, torch.tensor([70.0, 73.0, 76.0]) / math.sqrt(2))  # (10 + 60, 11 + 62, 12 + 64)
    assert torch.equal(cc.conv_weight(w, math.sqrt(2), use_wscale=False)[:, :, 0, 0], w[0, 0].t())
    d = cc.dense_weight(w[0, 0], 1.0, use_wscale=True)                # Dense1's gain 1: 1 / sqrt(in = 4)
    assert torch.allclose(F.linear(x.flatten(1), d).flatten(), torch.tensor([35.0, 36.5, 38.0]))


def test_fused_downscale_is_a_conv_then_a_2x2_average():
    """TF's fused conv2d_downscale2d kernel (stride 2, 'SAME') = the 3x3 conv, then 2x2 average pooling."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64)
    fused = F.conv2d(x, cc.fused_downscale_weight(w), stride=2, padding=1)
    assert torch.allclose(fused, F.avg_pool2d(F.conv2d(x, w, padding=1), 2), atol=1e-12)
    flat = torch.ones(1, 1, 4, 4)                                        # the blur keeps a constant inside
    assert torch.allclose(cc.blur(flat, [1, 2, 1])[..., 1:3, 1:3], torch.ones(1, 1, 2, 2))


def test_minibatch_stddev_groups_like_tf():
    x = torch.tensor([0.0, 1.0, 4.0, 9.0], dtype=torch.float64).reshape(4, 1, 1, 1).repeat(1, 2, 1, 1)
    y = cc.minibatch_stddev(x, group_size=2)                             # groups {0, 2} and {1, 3}
    std = lambda a, b: float(np.sqrt(((a - b) / 2) ** 2 + 1e-8))        # (not {0, 1}: 0.5, {2, 3}: 2.5)
    want = torch.tensor([std(0, 4), std(1, 9), std(0, 4), std(1, 9)], dtype=torch.float64)
    assert torch.allclose(y[:, 2, 0, 0], want) and torch.equal(y[:, :2], x)
    with pytest.raises(ValueError, match="does not split into groups"):
        cc.minibatch_stddev(x[:3], group_size=2)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="celebahq-classifier-00-male.pkl.*NVlabs/stylegan"):
        cc.load_celebahq_classifier(tmp_path / "celebahq-classifier-00-male.pkl")
    variables = tf_variables("D_basic", {**TINY, "mbstd_group_size": 0}, seed=0)
    del variables["8x8/Conv0/weight"]
    write_tf_pickle(tmp_path / "broken.pkl", "D_basic", {**TINY, "mbstd_group_size": 0}, variables)
    with pytest.raises(ValueError, match="8x8/Conv0/weight: missing"):
        cc.load_celebahq_classifier(tmp_path / "broken.pkl")

    class Evil:
        def __reduce__(self):
            return print, ("unpickled",)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        cc.read_tf_pickle(tmp_path / "evil.pkl")


def test_images_are_box_averaged_to_the_classifier_resolution(tmp_path):
    kw = {**TINY, "mbstd_group_size": 0}
    write_tf_pickle(tmp_path / "clf.pkl", "D_basic", kw, tf_variables("D_basic", kw, seed=3))
    clf = cc.load_celebahq_classifier(tmp_path / "clf.pkl").double()
    x = torch.rand(2, 3, 48, 48, dtype=torch.float64) * 2 - 1
    assert torch.allclose(clf(x), clf(F.avg_pool2d(x, 3)), atol=1e-12)
    with pytest.raises(ValueError, match="16 px or an integer multiple"):
        clf(x[..., :40, :40])


def fake_data_root(root):
    """<root>/weights/ with the six ALS classifiers, tiny, each with its own weights."""
    (root / "weights").mkdir(parents=True)
    kw = {**TINY, "mbstd_group_size": 0}
    for i, (file, _) in enumerate(cc.ALS_FILES.values()):
        write_tf_pickle(root / "weights" / file, "D_basic", kw, tf_variables("D_basic", kw, seed=10 + i))
    return root


def test_full_scale_als_classifiers_score_the_six_attributes_in_order(tmp_path, monkeypatch, one_thread):
    from ssl_lab import recipes
    from ssl_lab.attribute_classifier import ALS_ATTRIBUTES
    monkeypatch.setenv("SSL_LAB_DATA", str(fake_data_root(tmp_path)))
    clf = recipes.als_classifiers("full")
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    s = clf.scores(x, batch=2)
    assert s.shape == (5, 6) and clf.names == list(ALS_ATTRIBUTES)
    for j, (file, sign) in enumerate(cc.ALS_FILES[a] for a in ALS_ATTRIBUTES):
        one = cc.load_celebahq_classifier(tmp_path / "weights" / file)
        assert torch.allclose(s[:, j], sign * one(x), atol=1e-5)
    assert cc.ALS_FILES["Beard"] == ("celebahq-classifier-27-no-beard.pkl", -1.0)
    (tmp_path / "weights" / "celebahq-classifier-04-young.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=f"celebahq-classifier-04-young.pkl.*{tmp_path / 'weights'}"):
        recipes.als_classifiers("full")
    files = recipes.chapter_weights("hsr/latent_linearity", "full")
    assert [f for f, _ in cc.ALS_FILES.values()] == files[:6]


def test_below_full_scale_als_classifiers_is_the_zoo_artefact(monkeypatch):
    from ssl_lab import recipes
    calls = []
    monkeypatch.setattr(recipes.zoo, "get", lambda *a, **k: calls.append((a, k)) or "artefact")
    assert recipes.als_classifiers("small", "cpu", seed=2) == "artefact"
    assert calls == [(("als/classifier", "small"), dict(device="cpu", seed=2))]
