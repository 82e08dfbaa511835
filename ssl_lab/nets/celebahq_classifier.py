"""The CelebA-HQ attribute classifiers of NVIDIA's StyleGAN release (``celebahq-classifier-NN-
<attribute>.pkl``, 40 files), read from their TensorFlow-1 pickles without TensorFlow, and run
by a PyTorch re-implementation of the graph that built them. The ALS chapter scores generated
faces with six of them at full scale (:data:`ALS_FILES`, :func:`ssl_lab.recipes.als_classifiers`).

What came from where (facts read in the released code; no code copied):

* NVlabs/stylegan ``metrics/linear_separability.py`` (and NVlabs/stylegan2's copy): the 40 file
  names and their indices (``00-male``, ``01-smiling``, ``04-young``, ``09-bangs``,
  ``12-black-hair``, ``27-no-beard``, ...); "the attribute classifiers were built for 256x256":
  larger generator images are box-averaged by an integer factor down to 256 px
  (:meth:`CelebAHQClassifier.forward` does the same); the images are the generator's, in
  [-1, 1]; the output is one logit per image (the metric softmaxes ``[logit, -logit]``).
  The StyleGAN paper (Sec. 4.2) says the classifiers have the discriminator's architecture.
* NVlabs/stylegan ``training/misc.py`` ``load_pkl`` (a plain ``pickle.load``, latin-1) and
  ``dnnlib/tflib/network.py`` (``Network.__getstate__`` / ``__setstate__``): a pickle holds a
  ``dnnlib.tflib.network.Network`` whose state is ``version`` (2, 3, or 4 in NVlabs/stylegan2),
  ``name``, ``static_kwargs``, ``components`` (from version 3), ``build_module_src`` (the
  source of the module that built the graph), ``build_func_name`` and ``variables``, a list
  of ``(TF name relative to the network, numpy array)``; ``run`` takes one array per input
  of the build function and returns a single array when it has one output.
* NVlabs/stylegan2-ada-pytorch ``legacy.py``: how such pickles are read without TensorFlow:
  an ``Unpickler`` whose ``find_class`` returns a stub for ``dnnlib.tflib.network.Network``.
  :func:`read_tf_pickle` does the same, and refuses every class that is not a stub or a
  numpy array part (it never executes ``build_module_src``; it reads the build function's
  default arguments from it with :mod:`ast`, because ``static_kwargs`` holds only the
  arguments that were passed).
* NVlabs/stylegan ``training/networks_stylegan.py`` ``D_basic`` and
  ``training/networks_progan.py`` ``D_paper`` (tkarras/progressive_growing_of_gans
  ``networks.py`` is its first version): the graph :class:`TFDiscriminator` re-implements,
  for whichever of the two ``build_func_name`` names. ``FromRGB_lod0`` (1x1 conv) at full
  resolution; per resolution ``2**res`` from the input's down to 8: ``Conv0`` (3x3) then the
  downsampling conv (``Conv1_down``: [D_basic only: a ``blur_filter`` low-pass, default
  [1, 2, 1], normalised, depthwise, 'SAME'] then a 3x3 conv fused with 2x2 average pooling,
  i.e. its kernel padded to 5x5, the four 4x4 shifts summed and divided by 4, stride 2;
  unfused: D_basic pools after the conv and before the bias, D_paper (scope ``Conv1``) after
  the activation); at 4x4: minibatch stddev (if ``mbstd_group_size > 1``; D_basic's
  ``mbstd_num_features``), ``Conv`` (3x3), ``Dense0`` (to ``nf(0)``), ``Dense1`` (to 1, gain 1).
  Every layer adds its bias, then leaky ReLU 0.2 (D_basic: ``nonlinearity`` 'relu' or
  'lrelu'), but Dense1. ``nf(stage) = min(int(fmap_base / 2 ** (stage * fmap_decay)),
  fmap_max)``. Equalised learning rate (``use_wscale``): a weight variable ``w`` (TF layout
  HWIO for convs, [in, out] for dense layers) is used as ``w * gain / sqrt(fan_in)``, ``fan_in
  = prod(shape[:-1])``, gain sqrt(2) (1 for Dense1), the learning-rate multiplier is 1 for
  weights and biases (so no bias multiplier). The stored ``lod`` must be 0 (a fully grown
  network: then the 'linear', 'recursive' and 'fixed' structures compute the same graph).
* val-iisc/HSR ``ALS/get_attr.py`` (the thesis's ALS): it loads *every* file whose name
  contains ``celebahq-classifier`` in a folder, sorted by name, and runs each on the 11 frames
  of a path (PNG, uint8 -> ``x / 255 * 2 - 1``, NCHW, no resizing, so the frames are 256 px),
  keeping the raw logits (``run(images, None)``: two inputs, images and empty labels; one
  output). ``ALS/compute_als.py`` uses the first ``n_attr = 5`` columns, and a commented-out
  list reads ``['male','smile','young','bald','eyeglasses','no-beard']``.

What could not be established (said here, not guessed silently):

* **Which six files the thesis used.** The HSR release does not name them: its classifiers
  folder is a Google-Drive link (``ALS/attr_models/README.md``). :data:`ALS_FILES` is this
  package's choice for the thesis's {gender, smile, age, hair, bangs, beard}: 00-male,
  01-smiling, 04-young (its logit rises as a face looks younger, as ``ALS_ATTRIBUTES`` "Age"
  does), 12-black-hair (the CelebA attribute the small scale scores "Hair" by), 09-bangs, and
  27-no-beard (CelebA has no "beard" attribute) with its logit negated.
* **The sign of a logit.** The training code of the classifiers is not released; that a
  positive logit means the attribute named in the file is assumed. ALS (both variants) does
  not depend on the sign of any column.
* **The build function and its arguments** (D_basic or D_paper, ``fused_scale``,
  ``mbstd_group_size``, ``blur_filter``, ``fmap_*``): they are in each pickle, so
  :func:`read_tf_pickle` reads them and :class:`TFDiscriminator` builds what they say,
  refusing a build function, a label size, a stored ``lod`` or a variable shape it does not
  know. That HSR ran batches of 11 (which TF's minibatch-stddev reshape rejects for a group
  of 4) suggests the classifiers have no minibatch stddev; with one, a logit depends on the
  other images of its batch group, as in TF.
* The release scores 8-bit PNGs; here float images are scored as they are.
"""
from __future__ import annotations

import ast
import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: the thesis's six ALS attributes (``ssl_lab.attribute_classifier.ALS_ATTRIBUTES`` order) ->
#: (the StyleGAN release's classifier file, the sign its logit is scored with); see the module doc
ALS_FILES = {"Gender": ("celebahq-classifier-00-male.pkl", 1.0),
             "Smile": ("celebahq-classifier-01-smiling.pkl", 1.0),
             "Age": ("celebahq-classifier-04-young.pkl", 1.0),
             "Hair": ("celebahq-classifier-12-black-hair.pkl", 1.0),
             "Bangs": ("celebahq-classifier-09-bangs.pkl", 1.0),
             "Beard": ("celebahq-classifier-27-no-beard.pkl", -1.0)}
#: where the files come from (NVlabs/stylegan metrics/linear_separability.py lists their URLs)
SOURCE = "NVIDIA's StyleGAN release (NVlabs/stylegan, metrics/linear_separability.py)"


# -- reading a TF-1 pickle without TensorFlow -------------------------------------------------
class _TFNetwork:
    """Stands in for ``dnnlib.tflib.network.Network``: keeps the pickled state as attributes."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict)."""


_STUBS = {("dnnlib.tflib.network", "Network"): _TFNetwork, ("tfutil", "Network"): _TFNetwork,
          ("dnnlib.util", "EasyDict"): _EasyDict, ("dnnlib", "EasyDict"): _EasyDict}
_NUMPY = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
          ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
          ("collections", "OrderedDict")}


class _Unpickler(pickle.Unpickler):
    """Stubs dnnlib's classes, allows numpy arrays, refuses everything else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _STUBS:
            return _STUBS[module, name]
        module = module.replace("numpy.core", "numpy._core", 1)     # pickled by numpy 1.x
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a TF network pickle may hold dnnlib networks and numpy arrays; "
                                     f"this one asks for {module}.{name}, which is refused")


def _defaults(source: str, func: str) -> dict:
    """The literal default arguments of function ``func`` in the module source ``source`` (parsed, never run)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == func:
            args = node.args.args[len(node.args.args) - len(node.args.defaults):]
            out = {}
            for a, d in zip(args, node.args.defaults):
                try:
                    out[a.arg] = ast.literal_eval(d)
                except (ValueError, TypeError, SyntaxError):   # not a literal: static_kwargs must say
                    pass
            return out
    raise ValueError(f"the pickle's build module has no function {func!r}")


def read_tf_pickle(path) -> dict:
    """A dnnlib TF-1 network pickle, read without TensorFlow: ``build_func_name``, ``version``,
    ``name``, ``static_kwargs`` (as pickled), ``kwargs`` (the build function's literal defaults,
    read from ``build_module_src``, updated with ``static_kwargs``) and ``variables``, ``{TF name:
    numpy array}`` (a component's names prefixed with its name and ``/``)."""
    with open(path, "rb") as f:
        net = _Unpickler(f, encoding="latin1").load()
    if not isinstance(net, _TFNetwork) or "variables" not in net.__dict__:
        raise ValueError(f"{str(path)!r} is not a dnnlib TF network pickle (got {type(net).__name__})")

    variables = {}

    def collect(prefix, n):
        variables.update({prefix + k: np.asarray(v) for k, v in n.variables})
        for cname, comp in getattr(n, "components", {}).items():
            collect(f"{prefix}{cname}/", comp)
    collect("", net)
    static = dict(net.static_kwargs)
    return dict(build_func_name=net.build_func_name, version=net.version, name=net.name, static_kwargs=static,
                kwargs={**_defaults(net.build_module_src, net.build_func_name), **static}, variables=variables)


# -- the graph, in PyTorch --------------------------------------------------------------------
def conv_weight(w_hwio: torch.Tensor, gain: float, use_wscale: bool) -> torch.Tensor:
    """A TF conv weight variable ``[k, k, in, out]`` as PyTorch's ``[out, in, k, k]``, with the
    equalised learning rate's runtime scale ``gain / sqrt(k * k * in)`` (1 without ``use_wscale``)."""
    coef = gain / math.sqrt(np.prod(w_hwio.shape[:-1])) if use_wscale else 1.0
    return w_hwio.permute(3, 2, 0, 1) * coef


def dense_weight(w_io: torch.Tensor, gain: float, use_wscale: bool) -> torch.Tensor:
    """A TF dense weight variable ``[in, out]`` as ``nn.functional.linear``'s ``[out, in]``, scaled alike."""
    coef = gain / math.sqrt(w_io.shape[0]) if use_wscale else 1.0
    return w_io.t() * coef


def fused_downscale_weight(w_oihw: torch.Tensor) -> torch.Tensor:
    """TF's fused conv + 2x2 average pool: the 3x3 kernel padded to 5x5, its four 4x4 shifts summed,
    divided by 4 (use with stride 2, padding 1: TF's 'SAME' for a 4x4 kernel at stride 2)."""
    w = F.pad(w_oihw, (1, 1, 1, 1))
    return (w[..., 1:, 1:] + w[..., :-1, 1:] + w[..., 1:, :-1] + w[..., :-1, :-1]) * 0.25


def blur(x: torch.Tensor, taps) -> torch.Tensor:
    """D_basic's low-pass: the normalised outer product of ``taps``, depthwise, TF 'SAME' padding."""
    f = torch.tensor(taps, dtype=x.dtype, device=x.device)
    f = f[:, None] * f[None, :] if f.dim() == 1 else f
    f = (f / f.sum()).expand(x.shape[1], 1, *f.shape)
    (kh, kw) = f.shape[-2:]
    x = F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
    return F.conv2d(x, f, groups=x.shape[1])


def minibatch_stddev(x: torch.Tensor, group_size: int, num_features: int = 1) -> torch.Tensor:
    """TF's minibatch-stddev layer: image ``i`` is in group ``i % (N / G)``, ``G = min(group_size, N)``;
    per group and channel group, the std over the group's images (+1e-8 under the root), averaged
    over channels and pixels, appended as ``num_features`` constant maps."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch stddev: a batch of {n} images does not split into groups of {g} "
                         "(TF's reshape refuses it too); score batches of a multiple of the group size")
    y = x.reshape(g, -1, num_features, c // num_features, h, w)
    y = ((y - y.mean(0, keepdim=True)) ** 2).mean(0)
    y = (y + 1e-8).sqrt().mean((2, 3, 4))                            # [M, n]
    return torch.cat([x, y[:, :, None, None].repeat(g, 1, h, w)], 1)


class TFDiscriminator(nn.Module):
    """D_basic (StyleGAN) or D_paper (ProGAN, StyleGAN's copy) at full resolution, from the build
    function's ``kwargs`` and its TF ``variables`` (:func:`read_tf_pickle`); images ``(B, C, R, R)``
    -> scores ``(B, 1)``, computed in the dtype of the weights (``.double()`` for float64).
    The weights are kept as TF stores them (buffers named as the TF variables, layout included)
    and scaled at run time, as TF does."""

    def __init__(self, build_func_name: str, kwargs: dict, variables: dict):
        super().__init__()
        if build_func_name not in ("D_basic", "D_paper"):
            raise NotImplementedError(f"build function {build_func_name!r}: only StyleGAN's D_basic and "
                                      "ProGAN's D_paper are re-implemented")
        k = dict(kwargs)
        self.kind, self.resolution = build_func_name, int(k["resolution"])
        self.log2 = int(np.log2(self.resolution))
        if self.resolution != 2 ** self.log2 or self.resolution < 4:
            raise ValueError(f"resolution {self.resolution} is not a power of 2 >= 4")
        if k.get("label_size", 0):
            raise ValueError(f"label_size {k['label_size']}: a label-conditioned network is no attribute classifier")
        basic = build_func_name == "D_basic"
        self.nonlinearity = k.get("nonlinearity", "lrelu") if basic else "lrelu"
        if self.nonlinearity not in ("lrelu", "relu"):
            raise ValueError(f"nonlinearity {self.nonlinearity!r}: D_basic takes 'lrelu' or 'relu'")
        self.use_wscale, self.fused = bool(k.get("use_wscale", True)), k.get("fused_scale", "auto" if basic else True)
        if self.fused not in ((True, False, "auto") if basic else (True, False)):
            raise ValueError(f"{build_func_name}: fused_scale {self.fused!r} is not one it takes")
        self.blur_filter = k.get("blur_filter") if basic else None
        self.mbstd_group = int(k.get("mbstd_group_size", 4))
        self.mbstd_features = int(k.get("mbstd_num_features", 1)) if basic else 1
        self.conv1 = "Conv1_down" if basic or self.fused else "Conv1"
        lod = float(np.asarray(variables.get("lod", 0.0)))
        if lod != 0.0:
            raise ValueError(f"the network's lod is {lod}: it was pickled in the middle of progressive growing")

        def nf(stage):
            base, decay, top = k.get("fmap_base", 8192), k.get("fmap_decay", 1.0), k.get("fmap_max", 512)
            return min(int(base / (2.0 ** (stage * decay))), top)
        r, extra = self.log2, self.mbstd_features if self.mbstd_group > 1 else 0
        shapes = {"FromRGB_lod0/weight": (1, 1, k.get("num_channels", 3), nf(r - 1)),
                  "FromRGB_lod0/bias": (nf(r - 1),)}
        for res in range(r, 2, -1):
            shapes.update({f"{2**res}x{2**res}/Conv0/weight": (3, 3, nf(res - 1), nf(res - 1)),
                           f"{2**res}x{2**res}/Conv0/bias": (nf(res - 1),),
                           f"{2**res}x{2**res}/{self.conv1}/weight": (3, 3, nf(res - 1), nf(res - 2)),
                           f"{2**res}x{2**res}/{self.conv1}/bias": (nf(res - 2),)})
        shapes.update({"4x4/Conv/weight": (3, 3, nf(1) + extra, nf(1)), "4x4/Conv/bias": (nf(1),),
                       "4x4/Dense0/weight": (nf(1) * 16, nf(0)), "4x4/Dense0/bias": (nf(0),),
                       "4x4/Dense1/weight": (nf(0), 1), "4x4/Dense1/bias": (1,)})
        bad = [f"{n}: {np.shape(variables[n]) if n in variables else 'missing'}, expected {s}"
               for n, s in shapes.items() if n not in variables or tuple(np.shape(variables[n])) != s]
        if bad:
            raise ValueError(f"the variables do not fit {build_func_name}({k}): " + "; ".join(bad))
        for n in shapes:                                   # buffers named as the TF variables
            self.register_buffer(n, torch.from_numpy(np.array(variables[n])))

    def _w(self, name: str) -> torch.Tensor:
        return getattr(self, name)

    def _conv(self, x, scope, gain=math.sqrt(2)):
        return F.conv2d(x, conv_weight(self._w(f"{scope}/weight"), gain, self.use_wscale),
                        padding=self._w(f"{scope}/weight").shape[0] // 2)

    def _bias_act(self, x, scope, act=True):
        b = self._w(f"{scope}/bias")
        x = x + (b.view(1, -1, 1, 1) if x.dim() == 4 else b)
        if not act:
            return x
        return F.leaky_relu(x, 0.2) if self.nonlinearity == "lrelu" else F.relu(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self._bias_act(self._conv(images.to(self._w("FromRGB_lod0/bias").dtype), "FromRGB_lod0"), "FromRGB_lod0")
        for res in range(self.log2, 2, -1):
            scope = f"{2**res}x{2**res}"
            x = self._bias_act(self._conv(x, f"{scope}/Conv0"), f"{scope}/Conv0")
            down = f"{scope}/{self.conv1}"
            if self.blur_filter:
                x = blur(x, self.blur_filter)
            fused = 2 ** res >= 128 if self.fused == "auto" else self.fused    # D_basic's 'auto': from 128 px
            if fused:
                w = fused_downscale_weight(conv_weight(self._w(f"{down}/weight"), math.sqrt(2), self.use_wscale))
                x = self._bias_act(F.conv2d(x, w, stride=2, padding=1), down)
            elif self.kind == "D_basic":                  # pool, then bias and activation
                x = self._bias_act(F.avg_pool2d(self._conv(x, down), 2), down)
            else:                                          # D_paper: pool the activations
                x = F.avg_pool2d(self._bias_act(self._conv(x, down), down), 2)
        if self.mbstd_group > 1:
            x = minibatch_stddev(x, self.mbstd_group, self.mbstd_features)
        x = self._bias_act(self._conv(x, "4x4/Conv"), "4x4/Conv").flatten(1)     # NCHW order, as TF's reshape
        x = self._bias_act(F.linear(x, dense_weight(self._w("4x4/Dense0/weight"), math.sqrt(2), self.use_wscale)),
                           "4x4/Dense0")
        return self._bias_act(F.linear(x, dense_weight(self._w("4x4/Dense1/weight"), 1.0, self.use_wscale)),
                              "4x4/Dense1", act=False)


class CelebAHQClassifier(nn.Module):
    """One CelebA-HQ attribute classifier: images ``(B, 3, H, W)`` in [-1, 1] -> logits ``(B,)``.
    Images larger than the classifier's resolution by an integer factor are box-averaged down to
    it, as StyleGAN's linear-separability metric does; other sizes are refused."""

    def __init__(self, net: TFDiscriminator, name: str):
        super().__init__()
        self.net, self.name = net, name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        r, (h, w) = self.net.resolution, images.shape[-2:]
        if h != w or h < r or h % r:
            raise ValueError(f"{self.name} takes square images of {r} px or an integer multiple of it "
                             f"(box-averaged to {r}, as StyleGAN's metric does); got {h}x{w}")
        if h > r:
            images = images.reshape(*images.shape[:-2], r, h // r, r, h // r).mean((-3, -1))
        return self.net(images)[:, 0]


def load_celebahq_classifier(path) -> CelebAHQClassifier:
    """The classifier in the StyleGAN release's pickle ``path`` (e.g.
    ``celebahq-classifier-00-male.pkl``), in eval mode without gradients; see the module doc."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CelebA-HQ attribute classifier not found: {str(path)!r}; it must be a "
                                f"local copy of that file from {SOURCE} (nothing is downloaded here)")
    tf = read_tf_pickle(path)
    net = TFDiscriminator(tf["build_func_name"], tf["kwargs"], tf["variables"])
    return CelebAHQClassifier(net, path.stem).eval().requires_grad_(False)


class CelebAHQAttributeClassifiers(nn.Module):
    """Several classifiers as one: images in [-1, 1] -> ``(B, len(names))`` logits, each column
    times its sign; :meth:`scores` has :meth:`ssl_lab.attribute_classifier.AttributeClassifier.scores`'s
    interface. ``name`` labels results."""

    def __init__(self, classifiers: dict[str, CelebAHQClassifier], signs: dict[str, float]):
        super().__init__()
        self.names = list(classifiers)
        self.classifiers = nn.ModuleList(classifiers.values())
        self.signs = [float(signs[n]) for n in self.names]
        self.name = "celebahq-classifiers"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([s * c(images) for s, c in zip(self.signs, self.classifiers)], 1)

    @torch.no_grad()
    def scores(self, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """``(B, len(names))`` logits, ``batch`` images at a time (with a minibatch-stddev layer a
        logit depends on its batch group, as in TF)."""
        return torch.cat([self(images[i:i + batch]) for i in range(0, len(images), batch)])


__all__ = ["ALS_FILES", "CelebAHQAttributeClassifiers", "CelebAHQClassifier", "SOURCE", "TFDiscriminator",
           "blur", "conv_weight", "dense_weight", "fused_downscale_weight", "load_celebahq_classifier",
           "minibatch_stddev", "read_tf_pickle"]
