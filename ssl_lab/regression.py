"""Landmark regression on frozen features (thesis §3.2.4, Tables 3.2-3.7): which features,
the zoo recipe ``lead/regressor`` that fits a regressor on them, and the errors the
chapters report, with the mean-shape yardstick.

The protocol is ContrastLandmarks' and DVE's (:mod:`ssl_lab.nets.regressor` says what came
from where): the frozen network's dense maps are computed once for every image of the
annotated training split (no augmentation), a :class:`~ssl_lab.nets.regressor.LandmarkRegressor`
is fit on them, and the error on the test split is the mean over images of the landmark
error in % of the inter-ocular distance (5 points and the eye centres; 300-W: 68 points
and the outer eye corners, :func:`ssl_lab.metrics.landmarks.iod_error`).

Feature rows (:data:`FEATURES`): the stage-1 hypercolumns of BYOL and MoCo (the thesis's
3840-d rows; 960-d for the ResNet-18 below full scale), the same architecture untrained
(``"random hypercolumn"``, seeded: a yardstick no paper shows; ``"random hypercolumn / 64"``,
the same maps randomly projected to 64 dimensions, :func:`random_projection`, and
``"BYOL hypercolumn / 64"``, BYOL's maps through the same projection), and the stage-2
compact maps of LEAD, DVE and CL. Role sets (:data:`SETS`): MAFL, AFLW_M, AFLW_R and 300-W,
each a SynthFaces ``<set>/train`` and ``<set>/test`` split below full scale.

Budgets: ``small`` and ``full`` follow ContrastLandmarks' released schedule: its optimiser
and a 200-epoch cosine schedule stopped at the epoch its README reports per set (MAFL 120,
AFLW 45, 300-W 80; :data:`FULL_EPOCHS`). ``small`` once fit 20 epochs of a 20-epoch cosine
(our choice, for 2 CPU cores); ``data_scripts/regressor_budget.py`` showed it under-fit (the
LEAD-64 regressor's MAFL *training* error 8.84 % IOD, above the mean shape's 7.92; 4.14 under
the released schedule), so the released schedule replaced it. ``smoke`` fits 3 epochs.
"""
from __future__ import annotations

import math
import time

import torch

from . import results, zoo
from .data import splits
from .metrics.landmarks import iod_error, standard_error
from .nets.backbones import Backbone, dense_maps
from .nets.regressor import LandmarkRegressor, fit_regressor, predict

#: feature row -> (zoo recipe, its overrides); None: the stage-1 architecture, untrained;
#: ``project``: the hypercolumn through :func:`random_projection` to that many channels
FEATURES = {
    "BYOL hypercolumn": ("lead/stage1-byol", {}),
    "MoCo hypercolumn": ("lead/stage1-moco", {}),
    "random hypercolumn": (None, {}),
    "random hypercolumn / 64": (None, dict(project=64)),
    "BYOL hypercolumn / 64": ("lead/stage1-byol", dict(project=64)),
    "LEAD / 64": ("lead/stage2-lead", dict(feat_dim=64, proj_dim=256)),
    "DVE / 64": ("lead/stage2-dve", dict(feat_dim=64)),
    "CL / 64": ("lead/stage2-cl", dict(feat_dim=64)),
    "LEAD / 128": ("lead/stage2-lead", dict(feat_dim=128, proj_dim=256)),
    "CL / 128": ("lead/stage2-cl", dict(feat_dim=128)),
    "LEAD / 256": ("lead/stage2-lead", dict(feat_dim=256, proj_dim=256)),
    "CL / 256": ("lead/stage2-cl", dict(feat_dim=256)),
    **{f"LEAD on MoCo / {c}": ("lead/stage2-lead-from-moco", dict(feat_dim=c, proj_dim=256)) for c in (64, 128, 256)},
    **{f"CL on BYOL / {c}": ("lead/stage2-cl-from-byol", dict(feat_dim=c)) for c in (64, 128, 256)},
}
#: the thesis's column -> the SynthFaces split prefix of its role
SETS = {"MAFL": "mafl", "AFLW_M": "aflw_m", "AFLW_R": "aflw_r", "300W": "300w"}
#: the regression chapter's grid (Table 3.2 and its yardsticks): feature row -> role sets.
#: Under the released schedule, on one core of 2 (the other busy): a 5-point regressor on a
#: 64-d map takes about 7 min on MAFL (120 epochs of 157 steps of 22 ms) and 2 on an AFLW set;
#: on the 960-d random hypercolumn about 4 x that (the 1x1 filters cost 15 x more, the
#: soft-argmax the same). The 68-point regressors of 300-W (3,400 soft-argmax maps, 80 epochs of
#: 99 steps) took about 0.73 s a step on one core: 82-96 min each for LEAD-64, CL-64 and DVE-64. Not
#: shipped on 300-W: the random-init hypercolumn, whose regressor holds 3.3 M weights (6.5 MB as
#: float16, beyond the shipped zoo's budget); its error is recorded instead (:data:`UNSHIPPED`).
#: The stage-1 BYOL hypercolumn (960-d here) is the thesis's 3840-d LEAD row: its
#: Table 3.2 LEAD row matches no row of its Table 3.4, and §3.3.2 calls it "obtained using
#: hypercolumn feature maps" of "our model trained using the BYOL objective". Trained on the
#: 5-point sets: 31 min on MAFL and 7-10 on an AFLW set, on 2 threads beside another job. Not
#: shipped: the MoCo hypercolumn (CL's 3840-d row), whose three regressors (0.46 MB each as
#: float16) would take the zoo past its 100 MB.
TABLE_3_2 = {"LEAD / 64": ("mafl", "aflw_m", "aflw_r", "300w"),
             "DVE / 64": ("mafl", "aflw_m", "aflw_r", "300w"),
             "CL / 64": ("mafl", "aflw_m", "aflw_r", "300w"),
             "BYOL hypercolumn": ("mafl", "aflw_m", "aflw_r"),
             "random hypercolumn": ("mafl", "aflw_m", "aflw_r")}
#: where ``data_scripts/regressor_unshipped.py`` records the Table 3.2 cells whose regressors are
#: trained by the ``lead/regressor`` recipe but not shipped (no room in the zoo); the chapter shows
#: them at the scale and seed they were recorded at (:func:`unshipped_cells`)
UNSHIPPED = "lead/regressor-unshipped"


def unshipped_cells(scale: str, seed: int = 0, root=None) -> dict:
    """Table 3.2 cells recorded by ``data_scripts/regressor_unshipped.py`` at ``scale`` and
    ``seed``: ``{(feature row, column): {"iod", "se", "median", "train", "train_se", "commit",
    "stale", "shipped"}}``, the newest record of each cell (``train``, ``train_se``: the error on
    the regressor's own training faces, None where not recorded; ``shipped``: the regressor is
    in the zoo, recorded for its training-face error). ``stale``: None while the record's
    regressor key is the key the recipe gives now (same config, seed, SynthFaces splits), else a
    sentence saying it is not."""
    out = {}
    for rec in results.load_all(UNSHIPPED, root):          # oldest first: the newest wins
        if rec["scale"] != scale or rec["seeds"] != [seed] or rec["table"] != "thesis-3.2":
            continue
        p = rec["parameters"]
        now = zoo.key("lead/regressor", scale, seed, features=p["features"], set=p["set"])
        stale = None if p["regressor_key"] == now else (f"recorded with regressor key {p['regressor_key']}, "
                                                         f"the recipe's is now {now}")
        for row, cells in rec["rows"].items():
            for col in SETS:
                if col in cells:
                    out[(row, col)] = dict(iod=cells[col], se=cells[f"{col} s.e."], median=cells[f"{col} median"],
                                           train=cells.get(f"{col} train"), train_se=cells.get(f"{col} train s.e."),
                                           commit=rec["commit"], stale=stale, shipped=bool(p.get("shipped", False)))
    return out


#: Table 3.4's grid: the compact maps at 64, 128 and 256 dimensions (DVE at 64 only, as in the
#: thesis) on the 5-point sets; its 64-d rows are Table 3.2's regressors
TABLE_3_4 = {row: ("mafl", "aflw_m", "aflw_r")
             for row in ("DVE / 64", "CL / 64", "LEAD / 64", "CL / 128", "LEAD / 128", "CL / 256", "LEAD / 256")}
#: Table 3.6 (thesis §3.3.2): stage-1 objective / stage-2 objective (the thesis's row labels) ->
#: the feature row, at each of :data:`TABLE_3_6_DIMS`, regressed on AFLW_M. The thesis's stage-1
#: "CL" is MoCo (ContrastLandmarks' stage 1) and its "LEAD" is BYOL; the crossed rows are the
#: recipes of :data:`ssl_lab.recipes.CROSSED_STAGE2`, the diagonal ones Table 3.4's.
TABLE_3_6 = {"CL / CL": "CL / {}", "CL / LEAD": "LEAD on MoCo / {}",
             "LEAD / CL": "CL on BYOL / {}", "LEAD / LEAD": "LEAD / {}"}
TABLE_3_6_DIMS, TABLE_3_6_SET = (64, 128, 256), "aflw_m"
#: Fig. 3.9's set (thesis §3.3.4): unaligned MAFL, regressor trained on zoom-out 1-1.5, tested on
#: 1-2 (``mafl_unaligned``), and the rows compared there (the thesis: LEAD and CL, 64-d)
ZOOM_SET, FIG_3_9 = "mafl_unaligned", ("LEAD / 64", "CL / 64")
#: the ``(feature row, set)`` of every ``lead/regressor`` each regression page evaluates, in order
#: and without repeats: the regression chapter (Table 3.2, Fig. 3.9) and its ablations (Tables 3.4, 3.6)
REGRESSION_FITS = list(dict.fromkeys([*((row, st) for row, sets in TABLE_3_2.items() for st in sets),
                                      *((row, ZOOM_SET) for row in FIG_3_9)]))
ABLATION_FITS = list(dict.fromkeys([*((row, st) for row, sets in TABLE_3_4.items() for st in sets),
                                    *((row.format(c), TABLE_3_6_SET) for row in TABLE_3_6.values()
                                      for c in TABLE_3_6_DIMS)]))
#: ContrastLandmarks' README: the epoch of its 200-epoch schedule each set is reported at.
#: Unaligned MAFL is not among its sets; it takes MAFL's (the same faces, other crops).
FULL_EPOCHS = {"mafl": 120, "aflw_m": 45, "aflw_r": 45, "300w": 80, ZOOM_SET: 120}


def feature_network(row: str) -> tuple[str | None, dict, int | None]:
    """Row ``row``'s network (its zoo recipe, None for the untrained one), that network's config
    overrides, and the dimension its hypercolumn is projected to (None: not projected)."""
    if row not in FEATURES:
        raise KeyError(f"unknown feature row {row!r}; known: {list(FEATURES)}")
    name, overrides = FEATURES[row]
    net_overrides = {k: v for k, v in overrides.items() if k != "project"}
    return name, net_overrides, overrides.get("project")


def dense_features(row: str, scale: str, device="cpu", seed: int = 0, dtype=torch.float32):
    """The frozen feature extractor of row ``row`` (:data:`FEATURES`) at ``scale``: a function
    from float images ``(B, 3, H, W)`` in [0, 1] to maps ``(B, C, H/4, W/4)``, computed in
    ``dtype``."""
    name, overrides, project = feature_network(row)
    if name is None:
        torch.manual_seed(seed)
        net = Backbone(zoo.config("lead/stage1-byol", scale)["backbone"]).to(device).eval()
    else:
        net = zoo.get(name, scale, device=device, seed=seed, **overrides)
    net = net.to(dtype)
    fn = net.hypercolumn if isinstance(net, Backbone) else net
    if project is not None:
        w = random_projection(net.hypercolumn_channels, project, seed).to(device, dtype)
        return lambda x: torch.einsum("oc,bchw->bohw", w, fn(x.to(device, dtype)))
    return lambda x: fn(x.to(device, dtype))


def feature_dim(row: str, scale: str) -> int:
    """The channels of row ``row``'s maps at ``scale``: a compact map's ``feat_dim``, a projected
    row's ``project``, else the stage-1 backbone's hypercolumn (960 for a ResNet-18)."""
    name, overrides, project = feature_network(row)
    if project is not None or "feat_dim" in overrides:
        return project or overrides["feat_dim"]
    return Backbone(zoo.config(name or "lead/stage1-byol", scale)["backbone"]).hypercolumn_channels


def random_projection(in_dim: int, out_dim: int, seed: int = 0) -> torch.Tensor:
    """A seeded Johnson-Lindenstrauss projection ``(out_dim, in_dim)``: independent normal
    entries of variance ``1 / out_dim``, so a projected map cell keeps its squared norm in
    expectation. It makes the random-init hypercolumn a ``out_dim``-d map at the norm it had,
    so that it differs from the 960-d yardstick in its dimension alone (nothing is learned); the
    BYOL hypercolumn goes through the same matrix (same ``seed``), so that the two projected rows
    differ in what the network learned alone."""
    g = torch.Generator().manual_seed(10_000 + seed)
    return torch.randn(out_dim, in_dim, generator=g, dtype=torch.float64) / out_dim ** 0.5


def _annotated(set_name: str, part: str, scale: str) -> splits.FaceSet:
    if scale == "full":
        raise NotImplementedError("full-scale regression reads the real MAFL / AFLW / 300-W with "
                                  "ssl_lab.data.faces (see data_scripts/); pass checkpoint= to zoo.get")
    if set_name not in (*SETS.values(), ZOOM_SET):
        raise KeyError(f"unknown landmark set {set_name!r}; known: {sorted((*SETS.values(), ZOOM_SET))}")
    return splits.load(f"{set_name}/{part}", scale)


_REG = {s: dict(scale=s, features="BYOL hypercolumn", set="mafl", epochs=e, batch_size=32,
                lr=1e-3, weight_decay=5e-4)
        for s, e in (("smoke", 3), ("small", None), ("full", None))}


def _build_regressor(art, device):
    reg = LandmarkRegressor(art["in_channels"], art["num_points"])
    reg.load_state_dict(art["state_dict"])
    return reg.to(device).eval()


def _features_input(scale, seed, cfg):
    """A regressor's ``inputs``: the network of its feature row (none for the random one)."""
    name, overrides, _ = feature_network(cfg["features"])
    return [] if name is None else [(name, scale, seed, overrides)]


def _artefact(reg, hist, feats, train, cfg, feature_s, wall, **extra) -> dict:
    """What a regressor recipe returns: the fitted weights, their shape, the feature row and set,
    the training history and the times (``extra``: recipe-specific entries)."""
    return dict(state_dict={k: v.detach().cpu().clone() for k, v in reg.state_dict().items()},
                in_channels=feats.shape[1], num_points=train.landmarks.shape[1], features=cfg["features"],
                set=cfg["set"], history=hist["loss"], lr=hist["lr"], feature_s=feature_s, wall_s=wall, **extra)


@zoo.register("lead/regressor", _REG, build=_build_regressor, inputs=_features_input)
def train_regressor(cfg, device, seed):
    """Fit the landmark regressor of ``cfg["features"]`` on the ``cfg["set"]`` training split
    (the features network of the same ``seed``)."""
    train = _annotated(cfg["set"], "train", cfg["scale"])
    t0 = time.perf_counter()
    feats = dense_maps(dense_features(cfg["features"], cfg["scale"], device, seed), train.data["image"])
    t1 = time.perf_counter()
    epochs = cfg["epochs"] or FULL_EPOCHS[cfg["set"]]
    schedule = 200 if cfg["epochs"] is None else epochs
    reg, hist = fit_regressor(feats, train.landmarks, tuple(train.data["image"].shape[-2:]),
                              visible=train.visible, epochs=epochs, schedule_epochs=schedule,
                              batch_size=cfg["batch_size"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                              seed=seed, device=device, checkpoint=zoo.training_checkpoint())
    wall = hist["wall_s"]                              # over every resumed part
    return _artefact(reg, hist, feats, train, cfg, t1 - t0, wall,
                     images_per_s=epochs * len(feats) / wall if wall > 0 else float("nan"))


#: Table 3.5 (thesis §3.3.2): annotated AFLW_M-role training images, the rows compared, and the
#: random draws of the annotated subset per budget at each scale (the issue asks for at least 5).
#: On one core a small regressor takes about 2.3 min (50 epochs of the 4,000-image tiling, 22 ms
#: a step). The thesis's DVE-64 row is recorded by ``data_scripts/regressor_budget.py
#: --annotations N`` instead of shipped (its 30 regressors would take the zoo past 100 MB; the
#: ablations page reads it with :func:`few_draws`), and so are its rows at 128 / 256 dimensions
#: and on the stage-1 hypercolumns (:data:`THESIS_3840`).
FEW_ANNOTATIONS = (1, 5, 10, 20, 50, 100)
TABLE_3_5 = ("LEAD / 64", "CL / 64")
#: our hypercolumn rows -> the thesis's rows they stand beside: its "3840" rows are the stage-1
#: hypercolumns of a ResNet-50 (§3.3.2: "hypercolumn feature maps" of the BYOL model for LEAD;
#: ContrastLandmarks regresses from its MoCo-style network's hypercolumn), 960-d for our ResNet-18
THESIS_3840 = {"BYOL hypercolumn": "LEAD / 3840", "MoCo hypercolumn": "CL / 3840"}
FEW_DRAWS = {"smoke": (0,), "small": (0, 1, 2, 3, 4), "full": (0, 1, 2, 3, 4)}

_FEW = {s: dict(scale=s, features="LEAD / 64", set="aflw_m", annotations=1, draw=0, epochs=e, batch_size=32,
                lr=1e-2, weight_decay=5e-4)
        for s, e in (("smoke", 2), ("small", 50), ("full", 50))}


def annotated_subset(n_images: int, annotations: int, draw: int) -> torch.Tensor:
    """The indices of the ``annotations`` training images of draw ``draw``: the first
    ``annotations`` of a random permutation of the ``n_images`` seeded by the draw, so a draw's
    subsets are nested (its 5 images hold its 1): every budget of a draw shares its faces, and a
    curve over budgets is not also a curve over different random picks."""
    if not 1 <= annotations <= n_images:
        raise ValueError(f"cannot annotate {annotations} of {n_images} training images")
    return torch.randperm(n_images, generator=torch.Generator().manual_seed(int(draw)))[:annotations]


@zoo.register("lead/regressor-few", _FEW, build=_build_regressor, inputs=_features_input)
def train_few_regressor(cfg, device, seed):
    """A regressor fit on ``cfg["annotations"]`` annotated training images (Table 3.5) by DVE's
    limited-annotation protocol (jamt9000/DVE ``configs/templates/aflw-mtfl-limit-annos-keypoints.json``
    and ``data_loaders.py`` ``restrict_annos``): the subset (:func:`annotated_subset`) is
    tiled to the size of the full training split, and the regressor is trained on its cached
    descriptors without augmentation for 50 epochs by Adam (betas (0.9, 0.999), amsgrad) at a
    constant lr of 0.01 (its MultiStepLR has no milestones) with weight decay 5e-4, batch 32.
    ContrastLandmarks' own protocol (``eval_face.py --restrict_annos --repeat --TPS_aug``: 1,000
    epochs of 1,000 samples under a cosine, TPS-warped images) recomputes the features of every
    warped sample and costs about 20 times as much; it is not what runs here. The regressor's
    initialisation and data order follow the draw, the features network the zoo ``seed``."""
    train = _annotated(cfg["set"], "train", cfg["scale"])
    pick = annotated_subset(len(train), cfg["annotations"], cfg["draw"])
    t0 = time.perf_counter()
    feats = dense_maps(dense_features(cfg["features"], cfg["scale"], device, seed), train.data["image"][pick])
    t1 = time.perf_counter()
    reg, hist = fit_few(feats, train, pick, cfg, device)
    return _artefact(reg, hist, feats, train, cfg, t1 - t0, time.perf_counter() - t1, annotated=pick.tolist())


def fit_few(maps: torch.Tensor, train: splits.FaceSet, pick: torch.Tensor, cfg: dict, device="cpu"):
    """:func:`train_few_regressor`'s fit: a regressor on ``maps`` (the frozen maps of the
    ``pick`` images of ``train``, in that order) by DVE's limited-annotation protocol with the
    optimiser settings of ``cfg`` (a ``lead/regressor-few`` config). Returns ``(regressor,
    history)``."""
    n = len(pick)
    return fit_regressor(maps, train.landmarks[pick], tuple(train.data["image"].shape[-2:]),
                         visible=train.visible[pick], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                         lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=(0.9, 0.999), amsgrad=True,
                         schedule="none", num_per_epoch=len(train) // n * n, seed=cfg["draw"], device=device)


#: How far (in % IOD) a number computed in float32 (maps and regressor head) may lie from the
#: same number in float64. Measured (every test face's error in both precisions, by probes kept
#: outside the package) on this machine's CPU (AMX) with the default kernels and with AVX2
#: kernels (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``), against float64 with the
#: default kernels, over LEAD-64 on the four role sets, DVE-64 on the three 5-point ones and the
#: random and BYOL hypercolumns on AFLW_M (1,000 test faces each), and LEAD-64's 30
#: few-annotation regressors on AFLW_M: one face's error moved by at most 4.5e-3 (the softmax of
#: the soft-argmax, at a multiplier of 100, amplifies float32's rounding of the maps), a
#: few-annotation regressor's face by 8.8e-3 (AVX2); a mean over all the faces by at most
#: 1.4e-5, over 250 of them (400 random subsets per pair: the size of the pages' bins, none under
#: 237 faces) by 5.5e-5, over 100 by 1.0e-4; a few-annotation regressor's mean by 1.9e-5.
#: :data:`MEAN_MARGIN` is 3.6 times the 250-face figure and :data:`FACE_MARGIN` 5.7 times the
#: largest one-face one: a printed number closer than :data:`MEAN_MARGIN` to where its rounding
#: changes is computed again in float64 (:func:`settled`), and a median from the float64 errors
#: of every face within ``2 * FACE_MARGIN`` of it (:meth:`FaceErrors.median`). So the pages print
#: float64's rounding, the same on every CPU (nbval checks it under AVX2 kernels), at about
#: float32's cost: float64 maps took 6-8 times float32's (LEAD-64: 20 s against 3 per 1,000 faces
#: on one thread), and the 68-point head in float64 about twice float32's.
MEAN_MARGIN, FACE_MARGIN = 2e-4, 0.05
#: the same for a standard error over the faces (sd / sqrt(n) moves far less than a mean): measured
#: at most 7.6e-7 over all the faces, 5.2e-6 over 250 of them, 1.2e-5 over 100; the margin 3.8 times
#: the 250-face figure
SE_MARGIN = 2e-5
#: the same for a mean map norm (:func:`mean_norm`), relative: measured at most 2.5e-9
#: (LEAD-64 and CL-64 on AFLW_M), the margin 40 times that
NORM_MARGIN = 1e-7
#: the batch of :meth:`FrozenMaps.exact`: float64 convolutions take PyTorch's slow path, which ran
#: about 20 % faster in batches of 16 than of 64 (CL-64 and the random hypercolumn, one thread);
#: the float64 maps are bit-identical either way
F64_BATCH = 16


class FrozenMaps:
    """Row ``row``'s frozen maps of the ``part`` split of ``set_name`` (``faces``), computed
    once in float32 (``fast``) and in float64 only for the images asked for (:meth:`exact`),
    each at most once. One object serves every regressor evaluated on the same maps. Once every
    image's float64 maps are computed, the float32 ones are let go (``fast`` is None)."""

    def __init__(self, row: str, set_name: str, scale: str, device="cpu", seed: int = 0, part: str = "test"):
        self.row, self.set, self.scale, self.device, self.seed = row, set_name, scale, device, seed
        self.faces = _annotated(set_name, part, scale)
        self.fast = dense_maps(dense_features(row, scale, device, seed), self.faces.data["image"],
                               dtype=torch.float32)
        self._exact, self._done, self._net64 = None, torch.zeros(len(self.fast), dtype=torch.bool), None

    def exact(self, idx=None) -> torch.Tensor:
        """The float64 maps of images ``idx`` (default: all), computed on first request."""
        want = torch.arange(len(self._done)) if idx is None else torch.as_tensor(idx, dtype=torch.long).flatten()
        missing = want[~self._done[want]]
        if len(missing):
            if self._net64 is None:
                self._net64 = dense_features(self.row, self.scale, self.device, self.seed, torch.float64)
            maps = dense_maps(self._net64, self.faces.data["image"][missing], batch=F64_BATCH, dtype=torch.float64)
            if len(missing) == len(self._done):
                self._exact = maps
            else:
                if self._exact is None:
                    self._exact = torch.zeros(self.fast.shape, dtype=torch.float64)
                self._exact[missing] = maps
            del maps
            self._done[missing] = True
            if self._done.all():
                self.fast, self._net64 = None, None
        return self._exact if idx is None else self._exact[want]

    def mean_norm(self, digits: int = 3) -> float:
        """:func:`mean_norm` of the maps, rounding to ``digits`` decimals as float64's does: from
        the float64 maps when the float32 value lies within a relative :data:`NORM_MARGIN` of
        where that rounding changes."""
        if self.fast is None:
            return mean_norm(self._exact)
        value = mean_norm(self.fast)
        return mean_norm(self.exact()) if near_rounding(value, digits, NORM_MARGIN * abs(value)) else value


def eval_maps(row: str, set_name: str, scale: str, device="cpu", seed: int = 0, part: str = "test") -> FrozenMaps:
    """Row ``row``'s frozen maps of the ``part`` split of ``set_name``, computed once for every
    regressor evaluated on them (:class:`FrozenMaps`)."""
    return FrozenMaps(row, set_name, scale, device, seed, part)


class FaceErrors:
    """One shipped regressor's per-face errors (% IOD) on :class:`FrozenMaps`: from the float32
    maps (``exact`` False) until a printed number needs float64's (:func:`settled`,
    :meth:`median`). ``values``: ``(N,)`` float64, NaN for a face without a normalising
    distance; ``pred``: ``(N, K, 2)`` pixels. The regressor runs in the maps' precision (its
    weights, float16 in the zoo, are exact in both)."""

    def __init__(self, regressor, maps: FrozenMaps):
        self.reg, self.maps, self.exact = regressor, maps, maps.fast is None   # float64's maps already
        self.values, self.pred = self._errors(maps.exact() if self.exact else maps.fast, slice(None))

    def _errors(self, feats, idx):
        faces = self.maps.faces
        pred = predict(self.reg.to(feats.dtype), feats, tuple(faces.data["image"].shape[-2:]), dtype=feats.dtype)
        _, per_image = iod_error(pred, faces.landmarks[idx], visible=faces.visible[idx], per_image=True)
        return per_image, pred

    def make_exact(self) -> None:
        """Every face's error from the float64 maps."""
        if not self.exact:
            self.values, self.pred = self._errors(self.maps.exact(), slice(None))
            self.exact = True

    def median(self) -> float:
        """The median error over faces (the lower middle one for an even count, NaN left out),
        float64's: every face within ``2 * FACE_MARGIN`` of the float32 median is computed again
        in float64. A face further away lies on the same side of the median in both precisions
        (each face moves by less than ``FACE_MARGIN``, so the median does too), so the median
        face is among those computed again."""
        mid = float(self.values.nanmedian())
        if self.exact or math.isnan(mid):
            return mid
        near = ((self.values - mid).abs() <= 2 * FACE_MARGIN).nonzero().flatten()
        values = self.values.clone()
        values[near] = self._errors(self.maps.exact(near), near)[0]
        return float(values.nanmedian())


def _numbers(x):
    if isinstance(x, dict):
        return [v for item in x.values() for v in _numbers(item)]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _numbers(item)]
    return [float(x)] if isinstance(x, (int, float, torch.Tensor)) and not isinstance(x, bool) else []


def near_rounding(x, digits: int = 2, margin: float = MEAN_MARGIN) -> bool:
    """Whether any number in ``x`` (a number, or dicts and lists of them) lies within ``margin``
    of a point where rounding to ``digits`` decimals changes (``k + 0.5`` units of the last
    decimal); NaN and infinities never do."""
    unit = 10.0 ** -digits
    return any(math.isfinite(v) and unit / 2 - abs(math.remainder(v, unit)) < margin for v in _numbers(x))


def settled(fn, *errors, digits: int = 2, printed=None, margin: float = MEAN_MARGIN):
    """``fn(*per-face errors)`` from the float32 maps of ``errors`` (:class:`FaceErrors`; a
    tensor of per-face errors counts as exact), where ``printed(result)`` (default: the result
    itself) are the numbers a page prints at ``digits`` decimals (a number, or dicts and lists
    of them, each an average over many faces: a mean, a standard error, a bin's mean, a
    difference of two). If one lies within ``margin`` of where its rounding changes, every one
    of ``errors`` is made exact and ``fn`` runs again, so the numbers round as float64's do
    (:data:`MEAN_MARGIN` says why; :data:`SE_MARGIN` where every number is a standard error)."""
    values = lambda: [e.values if isinstance(e, FaceErrors) else e for e in errors]
    out = fn(*values())
    inexact = [e for e in errors if isinstance(e, FaceErrors) and not e.exact]
    if inexact and near_rounding(out if printed is None else printed(out), digits, margin):
        for e in inexact:
            e.make_exact()
        out = fn(*values())
    return out


def regression_error(row: str, set_name: str, scale: str, device="cpu", seed: int = 0, part: str = "test",
                     recipe: str = "lead/regressor", maps: FrozenMaps | None = None, **overrides) -> dict:
    """The shipped regressor of ``row`` on ``set_name``, evaluated on its test split (``part``:
    or on the ``"train"`` split it was fit on): ``{"iod": mean % IOD, "se": its standard error
    over the test faces, "median": the median face's error, "errors": the :class:`FaceErrors`,
    "per_image": (N,) its values, "pred": (N, K, 2) pixels}``. The three numbers round to 2
    decimals as float64's (:func:`settled`, :meth:`FaceErrors.median`), so the chapters print the
    same on every CPU. ``recipe`` and ``overrides`` select another regressor
    (``"lead/regressor-few"``, ``epochs=``); ``maps``: :func:`eval_maps` of the same row, set and
    part, computed once for many regressors."""
    maps = maps if maps is not None else eval_maps(row, set_name, scale, device, seed, part)
    reg = zoo.get(recipe, scale, device=device, seed=seed, features=row, set=set_name, **overrides)
    errors = FaceErrors(reg, maps)
    iod = settled(lambda e: float(e.nanmean()), errors)
    se = settled(standard_error, errors, margin=SE_MARGIN)
    return dict(iod=iod, se=se, median=errors.median(), errors=errors, per_image=errors.values, pred=errors.pred)


def few_annotation_errors(maps: FrozenMaps, annotations: int, draws, device="cpu") -> tuple[list[float], torch.Tensor]:
    """Table 3.5's cell: the mean test error (% IOD) of the shipped few-annotation regressor
    (``lead/regressor-few``, :func:`train_few_regressor`) of each draw in ``draws``, on the
    test ``maps`` of its feature row, with the first draw's predictions. Their mean and sample
    standard deviation, what the table prints, round to 2 decimals as float64's (:func:`settled`)."""
    errors = [FaceErrors(zoo.get("lead/regressor-few", maps.scale, device=device, seed=maps.seed, features=maps.row,
                                 set=maps.set, annotations=annotations, draw=d), maps) for d in draws]
    means = lambda *e: torch.stack([v.nanmean() for v in e])
    settled(lambda *e: [float(means(*e).mean()), float(means(*e).std())], *errors)
    return means(*(e.values for e in errors)).tolist(), errors[0].pred


def fit_end_to_end(set_name: str, scale: str, device="cpu", seed: int = 0, feat_dim: int = 64,
                   epochs: int | None = None, amp: bool = True):
    """The supervised yardstick that no paper shows: LEAD's dense network (its stage-2
    architecture at ``feat_dim``: the stage-1 backbone's first stages under an FPN decoder,
    :class:`~ssl_lab.ssl.lead.DenseNet`) **from random initialisation**, with the regressor on
    top, trained end to end on the ``set_name`` training split by the regressor's own protocol
    (:func:`~ssl_lab.nets.regressor.fit_regressor` with ``encoder=``: the same loss, optimiser,
    batch and schedule as ``lead/regressor`` at ``scale``, no augmentation). What a
    self-supervised network must beat: the annotated faces alone, with every weight free.
    ``epochs``: stop after that many epochs of the same schedule (default: the recipe's).
    ``amp``: bf16 autocast and channels_last. Returns ``(network, regressor, history)``, both
    in eval mode."""
    from .ssl.lead import DenseNet

    cfg, stage2 = zoo.config("lead/regressor", scale), zoo.config("lead/stage2-lead", scale)
    train = _annotated(set_name, "train", scale)
    torch.manual_seed(seed)
    net = DenseNet(zoo.config("lead/stage1-byol", scale)["backbone"], feat_dim, stage2["width"],
                   stages=stage2.get("stages", 4))
    if amp:
        net = net.to(memory_format=torch.channels_last)
    full = cfg["epochs"] or FULL_EPOCHS[set_name]
    reg, hist = fit_regressor(train.data["image"], train.landmarks, tuple(train.data["image"].shape[-2:]),
                              visible=train.visible, epochs=epochs or full,
                              schedule_epochs=200 if cfg["epochs"] is None else full,
                              batch_size=cfg["batch_size"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                              seed=seed, device=device, encoder=net, amp=amp)
    return net, reg, hist


def mean_norm(maps: torch.Tensor) -> float:
    """The mean L2 norm of a map cell's feature vector over every cell of every image of
    ``maps`` ``(N, C, h, w)``. The regressor is not invariant to it: its 1x1 filters start
    standard normal and their responses go through a softmax with a multiplier of 100, so a
    row's maps enter it in a regime set by their norm (``data_scripts/regressor_budget.py``
    measures what rescaling them changes). Summed in float64 over chunks of 256 images, so a
    large float16 stack is not copied whole."""
    total = sum(float(chunk.double().norm(dim=1).sum()) for chunk in maps.split(256))
    return total / (maps.shape[0] * maps.shape[2] * maps.shape[3])


#: the variant label of ``data_scripts/regressor_budget.py``'s maps multiplied to a common norm
SCALED_TO = "maps scaled to mean norm "


def budget_key(set_name: str, row: str, variant: str | None = None, annotations: int | None = None,
               draw: int | None = None) -> str:
    """The row key of a ``lead/regressor-budget`` record (``data_scripts/regressor_budget.py``):
    ``"set | row[, variant][, N faces][, draw D]"``, read back by :func:`budget_fields`."""
    parts = [row, variant, None if annotations is None else f"{annotations} faces",
             None if draw is None else f"draw {draw}"]
    return f"{set_name} | " + ", ".join(p for p in parts if p is not None)


def budget_fields(key: str) -> dict:
    """What a ``lead/regressor-budget`` row key says: ``set``, ``row``, ``variant`` (None for a
    yardstick row), ``norm`` (the common mean map norm of a :data:`SCALED_TO` variant, else
    None: the maps as they come), ``annotations`` and ``draw`` (None outside the few-annotation
    study). Row names hold no ", " (:data:`FEATURES`, "mean shape")."""
    set_name, rest = key.split(" | ", 1)
    row, *parts = rest.split(", ")
    fields = dict(set=set_name, row=row, variant=None, norm=None, annotations=None, draw=None)
    variant = []
    for part in parts:
        if part.startswith("draw "):
            fields["draw"] = int(part[len("draw "):])
        elif part.endswith(" faces"):
            fields["annotations"] = int(part[:-len(" faces")])
        else:
            variant.append(part)
            if part.startswith(SCALED_TO):
                fields["norm"] = float(part[len(SCALED_TO):])
    fields["variant"] = ", ".join(variant) or None
    return fields


def few_draws(records) -> dict:
    """The few-annotation rows of ``lead/regressor-budget`` records (``regressor_budget.py
    --annotations N``), gathered by draw: ``{(row, norm, annotations): {draw: record row}}``
    (``norm``: the common mean norm the maps were scaled to, ``None`` for maps as they come; a
    record row holds ``"test"`` and ``"train"`` % IOD), the yardstick's row "mean shape" included.
    Rows without an annotation count are left out."""
    out = {}
    for rec in records:
        for key, v in rec["rows"].items():
            f = budget_fields(key)
            if f["annotations"] is not None:
                out.setdefault((f["row"], f["norm"], f["annotations"]), {})[f["draw"]] = v
    return out


def mean_shape_error(train_landmarks: torch.Tensor, test_landmarks: torch.Tensor, train_visible=None,
                     test_visible=None, eyes=None, per_image: bool = False):
    """The nothing-learned yardstick: every test face predicted at the mean training shape
    (each landmark's mean position over the training images where it is visible), % IOD
    (``eyes``: the normalising indices, see :func:`~ssl_lab.metrics.landmarks.iod_error`);
    ``per_image=True`` also returns each test image's error, as ``iod_error`` does."""
    lm = torch.as_tensor(train_landmarks).double()
    vis = torch.ones(lm.shape[:2], dtype=torch.bool) if train_visible is None else torch.as_tensor(train_visible, dtype=torch.bool)
    w = vis[..., None].double()
    mean = (lm * w).sum(0) / w.sum(0).clamp(min=1)
    test = torch.as_tensor(test_landmarks).double()
    return iod_error(mean.expand_as(test), test, eyes=eyes, visible=test_visible, per_image=per_image)


def mean_shape_row(set_name: str, scale: str, per_image: bool = False):
    """:func:`mean_shape_error` of the ``set_name`` role at ``scale``."""
    train, test = _annotated(set_name, "train", scale), _annotated(set_name, "test", scale)
    return mean_shape_error(train.landmarks, test.landmarks, train.visible, test.visible, per_image=per_image)


def regressor_flops(in_channels: int, num_points: int, map_size, backward: bool = False,
                    num_intermediate: int = 50) -> int:
    """Floating-point operations of one image through the regressor (Table 3.7), counted by
    ``torch.utils.flop_counter`` on a :class:`~ssl_lab.nets.regressor.LandmarkRegressor` of
    ``in_channels`` on a ``map_size`` (``h`` or ``(h, w)``) map with ``num_points`` landmarks:
    the forward pass, or forward and backward with ``backward=True``. The counter counts a
    multiply-add as 2 operations and only the convolutions and matrix products (the 1x1
    filters, ``2 K M C h w``, and the linear maps, ``8 K M``); the soft-argmax's softmax and
    sums are not counted."""
    from torch.utils.flop_counter import FlopCounterMode
    h, w = (map_size, map_size) if isinstance(map_size, int) else map_size
    reg = LandmarkRegressor(in_channels, num_points, num_intermediate)
    feat = torch.zeros(1, in_channels, h, w)
    with FlopCounterMode(display=False) as counter:
        pred, _ = reg(feat)
        if backward:
            pred.sum().backward()
    return int(counter.get_total_flops())


def error_by_bin(per_image: torch.Tensor, value: torch.Tensor, edges) -> list[dict]:
    """Per-image errors ``per_image`` (``(N,)``, NaN for a face without a normalising
    distance, left out) grouped by a per-face quantity ``value`` (``(N,)``: Fig. 3.9's zoom-out
    factor, the yaw, the light) into the bins ``[edges[i], edges[i + 1])`` (the last bin
    closed): per bin ``{"lo", "hi", "n", "mean", "se"}``
    (:func:`~ssl_lab.metrics.landmarks.standard_error`; NaN mean for an empty bin)."""
    err, value = torch.as_tensor(per_image).double(), torch.as_tensor(value).double()
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (value >= lo) & ((value <= hi) if last else (value < hi)) & ~err.isnan()
        vals = err[inside]
        out.append(dict(lo=float(lo), hi=float(hi), n=int(inside.sum()),
                        mean=float(vals.mean()) if len(vals) else float("nan"),
                        se=standard_error(vals)))
    return out
