"""SynthFaces: procedural faces with exact landmarks, parts and attributes.

Why it exists: no face data set or pretrained weight can be downloaded where this book is
built, yet every table needs ground truth. So we render faces ourselves.

How a face is made
------------------
* The head is an ellipsoid in a face-local frame (x right, y down, z towards the camera).
  Its orthographic projection is an exact ellipse, and every pixel inside it has a
  front-surface point, a normal (for Lambertian lighting) and face-local coordinates
  (for the hairline, bangs and beard).
* The parts (eyes, iris, mouth, inner mouth, nose base, glasses) are *bent half-ellipses*
  lying in the tangent plane of the head at their centre. A planar ellipse projects to an
  ellipse, so each part is drawn from the same projected geometry that places its
  landmarks: the 68 points (300-W semantics) sit on the part outlines, and the 5 MAFL
  points are the eye centres (= iris centres), the nose tip (point 30) and the mouth
  corners (points 48 and 54, the ends of the mouth).
* Pose is a 3D rotation (yaw, pitch, roll) followed by a scaled orthographic projection.
  A landmark is visible when the head surface faces the camera there, it lies inside the
  image and no occluder covers it.

Randomness is counter-based (a SplitMix64 hash of seed, key and stream), so the
parameters of image ``i`` or of identity ``k`` never depend on batch size, order or device.
Identity parameters are keyed by identity id only: the same id gives the same face shape,
colours, hair, beard and glasses in every image and every split.

Pixel convention: pixel ``(row i, col j)`` has its centre at ``(x, y) = (j, i)``; landmarks
are returned as ``(x, y)`` in that frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RENDERER_VERSION = 4   # bump when a change alters rendered pixels or landmarks (invalidates caches)
PART_NAMES = ("background", "skin", "hair", "left_brow", "right_brow", "left_eye",
              "right_eye", "nose", "mouth", "beard", "glasses", "occluder")
PART = {n: i for i, n in enumerate(PART_NAMES)}
BINARY_ATTRIBUTES = ("male", "young", "smiling", "mouth_open", "black_hair", "brown_hair",
                     "blond_hair", "gray_hair", "bangs", "beard", "eyeglasses")
CONTINUOUS_ATTRIBUTES = ("age", "smile", "mouth_open", "hair_length", "skin_tone",
                         "yaw", "pitch", "roll", "zoom")
HAIR_COLOURS = ("black", "brown", "blond", "gray")
# A point counts as visible when the head surface under it faces the camera at less than
# ~75 degrees (cosine > 0.25): beyond that its part is a sliver at the silhouette. It must
# also lie in the image, outside any occluder and not behind the nose.
VISIBLE_FACING = 0.25
# The 5 MAFL points, in order: eye centres (image-left, image-right; the centres of the eye
# outlines 36-41 and 42-47), nose tip (point 30), mouth corners (points 48 and 54).


@dataclass(frozen=True)
class SynthConfig:
    """Ranges of the per-image nuisances. Identity parameters have fixed ranges."""
    yaw: float = 30.0           # degrees, uniform in [-yaw, yaw]
    pitch: float = 15.0
    roll: float = 10.0
    zoom: tuple[float, float] = (1.0, 1.0)   # zoom-out factor: face shrinks by 1/zoom
    shift: float = 0.04         # max centre shift, fraction of the image half-size
    occluder_p: float = 0.0     # probability of one occluder
    blur: tuple[float, float] = (0.0, 0.6)   # gaussian sigma in pixels at 64 px
    noise: tuple[float, float] = (0.0, 0.02)
    clutter: float = 0.3        # background clutter amplitude
    face_scale: float = 0.62    # head half-height / image half-size, before zoom
    # CelebA's alignment: (x, y) in [-1, 1] image coordinates (y down). When set, a similarity
    # transform of the image plane puts the two eye centres at (-x, y) and (x, y), so the
    # eye line is level and the inter-ocular distance is x of the image width; None: not aligned
    align_eyes: tuple[float, float] | None = None


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, keys, stream: int, n: int) -> np.ndarray:
    """Uniform [0, 1) numbers, shape (len(keys), n), a pure function of (seed, key, stream, j)."""
    keys = np.asarray(keys, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(_mix(np.uint64(seed & 0xFFFFFFFFFFFF) * np.uint64(0x632BE59BD9B4E019)) ^ keys)
        j = np.arange(n, dtype=np.uint64) + np.uint64(stream) * np.uint64(1 << 20)
        h = _mix(base[:, None] ^ _mix(j)[None, :])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _lerp(u, lo, hi):
    return lo + (hi - lo) * u


def identity_params(ids, seed: int = 0) -> dict[str, np.ndarray]:
    """Parameters fixed per identity id (shape, colours, hair, beard, glasses, sex, age)."""
    u = hash_uniform(seed, ids, stream=1, n=32).T
    male = u[0] < 0.5
    age = u[1]
    hair_cat = np.where(u[2] < 0.4, 0, np.where(u[2] < 0.75, 1, 2))
    hair_cat = np.where(u[3] < age ** 2 * 0.9, 3, hair_cat)        # grey with age
    base = np.array([[0.08, 0.06, 0.05], [0.35, 0.22, 0.12], [0.85, 0.70, 0.40],
                     [0.70, 0.70, 0.70]])[hair_cat]
    hair_rgb = np.clip(base * _lerp(u[4:7].T, 0.85, 1.15), 0, 1)
    tone = u[7]
    skin = (np.array([0.96, 0.80, 0.69]) * (1 - tone[:, None])
            + np.array([0.42, 0.28, 0.20]) * tone[:, None])
    iris = np.array([[0.35, 0.20, 0.10], [0.25, 0.45, 0.75], [0.30, 0.55, 0.35]])[
        (u[8] * 3).astype(int)]
    hair_len = np.where(male, _lerp(u[9], 0.0, 0.45), _lerp(u[9], 0.3, 1.0))
    return dict(
        male=male, age=age, hair_cat=hair_cat, hair_rgb=hair_rgb, skin_tone=tone,
        skin_rgb=skin, iris_rgb=iris, hair_len=hair_len,
        head_w=_lerp(u[10], 0.64, 0.78) + 0.03 * male, head_h=_lerp(u[11], 0.88, 1.0),
        head_d=_lerp(u[12], 0.70, 0.82),
        eye_sep=_lerp(u[13], 0.27, 0.34), eye_w=_lerp(u[14], 0.10, 0.13),
        eye_h=_lerp(u[15], 0.40, 0.60), eye_y=_lerp(u[16], -0.14, -0.06),
        brow_gap=_lerp(u[17], 0.09, 0.14), brow_t=np.where(male, 0.035, 0.022) * _lerp(u[18], 0.8, 1.2),
        nose_y=_lerp(u[19], 0.16, 0.26), nose_w=_lerp(u[20], 0.08, 0.12),
        nose_p=_lerp(u[21], 0.16, 0.26),
        mouth_y=_lerp(u[22], 0.40, 0.50), mouth_w=_lerp(u[23], 0.17, 0.24),
        lip=_lerp(u[24], 0.25, 0.45),
        lip_rgb=np.where(male[:, None], skin * np.array([0.85, 0.62, 0.60]),
                         np.array([0.75, 0.25, 0.30]) * _lerp(u[25], 0.8, 1.1)[:, None]),
        hairline=_lerp(u[26], -0.62, -0.50),
        bangs=u[27] < np.where(male, 0.15, 0.4),
        beard=male & (u[28] < 0.35),
        glasses=u[29] < 0.2,
        glasses_rgb=np.array([[0.05, 0.05, 0.05], [0.45, 0.25, 0.10], [0.6, 0.6, 0.65]])[
            (u[30] * 3).astype(int)],
        volume=_lerp(u[31], 1.03, 1.15),
    )


def image_params(idx, seed: int, cfg: SynthConfig) -> dict[str, np.ndarray]:
    """Per-image parameters: pose, expression, light, framing, background, nuisances."""
    u = hash_uniform(seed, idx, stream=2, n=24).T
    smile = np.where(u[3] < 0.5, _lerp(u[4], 0.0, 0.35), _lerp(u[4], 0.55, 1.0))
    mopen = np.where(u[5] < 0.7, 0.0, _lerp(u[6], 0.3, 1.0))
    return dict(
        yaw=_lerp(u[0], -cfg.yaw, cfg.yaw), pitch=_lerp(u[1], -cfg.pitch, cfg.pitch),
        roll=_lerp(u[2], -cfg.roll, cfg.roll), smile=smile, mouth_open=mopen,
        light_az=_lerp(u[7], -1.0, 1.0), light_el=_lerp(u[8], -0.6, 0.6),
        ambient=_lerp(u[9], 0.45, 0.75),
        zoom=_lerp(u[10], *cfg.zoom), shift_x=_lerp(u[11], -cfg.shift, cfg.shift),
        shift_y=_lerp(u[12], -cfg.shift, cfg.shift),
        bg_rgb=u[13:16].T * 0.8 + 0.1, bg_seed=(u[16] * 2**31).astype(np.int64),
        occ=u[17] < cfg.occluder_p, occ_xy=_lerp(u[18:20].T, -0.6, 0.6),
        occ_size=_lerp(u[20], 0.15, 0.4), occ_rgb=u[21:24].T,
        blur=_lerp(u[22], *cfg.blur), noise=_lerp(u[23], *cfg.noise),
    )


def frontal_light(imp: dict) -> np.ndarray:
    """How lit a face is, per image of :func:`image_params` ``imp``: the renderer's shading
    (ambient + (1 - ambient) max(0, n . l), see :func:`render`) of a surface patch facing the
    camera, n = (0, 0, 1): ambient + (1 - ambient) cos(light_az) cos(light_el). 1 for a face lit
    from the camera; about 0.7 at the dimmest ambient light from the widest angle."""
    amb = np.asarray(imp["ambient"], dtype=np.float64)
    direct = np.cos(imp["light_az"]) * np.cos(imp["light_el"])
    return amb + (1 - amb) * np.clip(direct, 0, None)


# ---------------------------------------------------------------- geometry helpers
def _rotation(yaw, pitch, roll):
    """R = Rz(roll) Rx(pitch) Ry(yaw), batched; angles in degrees."""
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    o, z = torch.ones_like(y), torch.zeros_like(y)
    ry = torch.stack([y.cos(), z, y.sin(), z, o, z, -y.sin(), z, y.cos()], -1).view(-1, 3, 3)
    rx = torch.stack([o, z, z, z, p.cos(), -p.sin(), z, p.sin(), p.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), z, r.sin(), r.cos(), z, z, z, o], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def _surface(x, y, abc):
    """Front-surface point of the head ellipsoid at local (x, y); x, y: (B, K) -> (B, K, 3)."""
    a, b, c = (t[:, None] for t in abc.unbind(-1))
    zz = (1 - (x / a) ** 2 - (y / b) ** 2).clamp_min(1e-4)
    return torch.stack([x, y, c * zz.sqrt()], -1)


def _normal(p, abc):
    n = p / abc[:, None, :] ** 2
    return n / n.norm(dim=-1, keepdim=True)


def _ramp(signed_px):
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return (signed_px + 0.5).clamp(0, 1)


@dataclass
class Decal:
    """A bent half-ellipse painted on the head surface, in face-local (x, y) units.

    Centre (cx, cy), half-width w, half-heights h_up / h_lo as fractions of w, bend k: the
    two ends (t = 0 and t = pi) are raised by k * w. All fields are (B,) tensors. The same
    formula gives the outline points (landmarks) and the painted pixels, so they agree.
    """
    cx: torch.Tensor
    cy: torch.Tensor
    w: torch.Tensor
    h_up: torch.Tensor
    h_lo: torch.Tensor
    k: torch.Tensor

    def points(self, t):
        """Outline points at angles t (K,): t=0 is the +x end, t=pi/2 the lowest point."""
        al, sn = torch.cos(t)[None], torch.sin(t)[None]
        h = torch.where(sn > 0, self.h_lo[:, None], self.h_up[:, None])
        beta = h * sn - self.k[:, None] * al ** 2
        return self.cx[:, None] + self.w[:, None] * al, self.cy[:, None] + self.w[:, None] * beta

    def take(self, i) -> "Decal":
        """The decals of images ``i`` only."""
        return Decal(*(f[i] for f in (self.cx, self.cy, self.w, self.h_up, self.h_lo, self.k)))

    def radius(self, lx, ly, px):
        """Elliptic radius r (1 on the outline) of pixels whose surface point is (lx, ly),
        and pixels per unit of r along the short axis (for anti-aliasing)."""
        e = lambda t: t[:, None, None]
        al = (lx - e(self.cx)) / e(self.w)
        be = (ly - e(self.cy)) / e(self.w) + e(self.k) * al.square()
        h = torch.where(be > 0, e(self.h_lo), e(self.h_up)).clamp_min(1e-3)
        return torch.sqrt(al.square_() + (be / h).square_()), e(px * self.w) * h

    def alpha(self, lx, ly, px, ring=None):
        """Coverage of pixels whose surface point is (lx, ly); px: pixels per local unit."""
        r, edge = self.radius(lx, ly, px)
        a = _ramp((1 - r) * edge)
        if ring is not None:                            # keep the band r in [1 - ring, 1]
            ring = ring[:, None, None] if torch.is_tensor(ring) else ring
            a = a * _ramp((r - 1 + ring) * edge)
        return a


def _capsules_alpha(qx, qy, a, b, wa, wb, px):
    """Coverage of capsules (segments a -> b with half-widths growing from wa to wb),
    for query coords qx, qy (B|1, S, S) in the same units as a, b (B, K, 2), wa, wb (B, K);
    px: (B,) pixels per unit. A capsule with a == b is a disc."""
    e = lambda v: v[:, :, None, None]
    ax, ay = e(a[..., 0]), e(a[..., 1])
    abx, aby = e(b[..., 0]) - ax, e(b[..., 1]) - ay
    aqx, aqy = qx[:, None] - ax, qy[:, None] - ay                      # B,K,S,S
    t = ((aqx * abx + aqy * aby) / (abx * abx + aby * aby).clamp_min(1e-12)).clamp_(0, 1)
    d = torch.sqrt((aqx - t * abx).square_() + (aqy - t * aby).square_())
    w = e(wa) + t * e(wb - wa)
    return _ramp((w - d).amax(1) * px[:, None, None])


def _layer(img, lab, alpha, rgb, label=None):
    img.mul_(1 - alpha[:, None]).add_(alpha[:, None] * rgb)
    if label is not None:
        lab.masked_fill_(alpha > 0.5, label)


def _rgb(x):
    return x[:, :, None, None]


def align_by_eyes(R, s, shift, eyes, target):
    """The camera ``(R, s, shift)`` composed with the image-plane similarity that maps the
    projected eye centres ``eyes`` ``(B, 2, 2)`` (image-left first) to ``(-x, y)`` and
    ``(x, y)``, ``target = (x, y)``. A 2D similarity ``u -> sigma Q u + t`` (Q an in-plane
    rotation) of ``project(p) = (R p)[:2] s + shift`` is the camera ``R' = Q3 R``,
    ``s' = sigma s``, ``shift' = sigma Q shift + t`` (Q3: Q about the camera's z axis, which
    leaves depth and so visibility unchanged), so the renderer draws the aligned face
    directly, without resampling the image: landmarks and parts stay exact."""
    x, y = float(target[0]), float(target[1])
    v = eyes[:, 1] - eyes[:, 0]
    sigma = 2 * x / v.norm(dim=-1)
    ang = -torch.atan2(v[:, 1], v[:, 0])
    c, n = ang.cos(), ang.sin()
    Q = torch.stack([torch.stack([c, -n], -1), torch.stack([n, c], -1)], -2)        # (B, 2, 2)
    mid = eyes.mean(1)
    t = torch.tensor([0.0, y], device=eyes.device) - sigma[:, None] * torch.einsum("bij,bj->bi", Q, mid)
    Q3 = torch.eye(3, device=R.device).repeat(len(R), 1, 1)
    Q3[:, :2, :2] = Q
    return Q3 @ R, sigma * s, sigma[:, None] * torch.einsum("bij,bj->bi", Q, shift) + t


def render(idp: dict, imp: dict, size: int = 64, device="cpu", cfg: SynthConfig = SynthConfig(),
           colours: dict | None = None) -> dict[str, torch.Tensor]:
    """Render a batch from identity params ``idp`` and image params ``imp`` (same length).

    ``colours`` overrides part colours, e.g. ``{"iris": (1, 0, 1)}`` for marker tests
    (keys: skin, iris, sclera, lips, mouth_inside, hair, glasses).
    Returns image (B,3,S,S) in [0, 1], kp68 (B,68,2), vis68, kp5 (B,5,2), vis5, parts (B,S,S).
    """
    if not 16 <= size <= 512:
        raise ValueError(f"size must be in [16, 512] px, got {size}")
    S, B = size, len(imp["yaw"])
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)
    ip, mp = {k: t(v) for k, v in idp.items()}, {k: t(v) for k, v in imp.items()}
    col = {k: t(v).expand(B, 3) for k, v in (colours or {}).items()}
    zero, one = torch.zeros(B, device=device), torch.ones(B, device=device)
    smile, mopen = mp["smile"], mp["mouth_open"]

    # ---- camera: rotation, scale, shift; image coords in [-1, 1] (pixel centres) ----
    R = _rotation(mp["yaw"], mp["pitch"], mp["roll"])
    s = cfg.face_scale / mp["zoom"]                                    # (B,)
    shift = torch.stack([mp["shift_x"], mp["shift_y"]], -1)
    abc = torch.stack([ip["head_w"], ip["head_h"], ip["head_d"]], -1)
    px = s * S / 2                                                     # pixels per local unit
    g = (torch.arange(S, device=device, dtype=torch.float32) * 2 + 1) / S - 1
    Y, X = torch.meshgrid(g, g, indexing="ij")

    def project(p):                                                    # (B,K,3) -> (B,K,2)
        return torch.einsum("bij,bkj->bki", R, p)[..., :2] * s[:, None, None] + shift[:, None]

    def facing(p):                                   # camera-z of the head normal under p
        n = _normal(_surface(p[..., 0], p[..., 1], abc), abc)
        return torch.einsum("bij,bkj->bki", R, n)[..., 2]

    # ---- the parts, in face-local units ----
    brow_y = ip["eye_y"] - ip["eye_w"] * ip["eye_h"] - ip["brow_gap"]
    eyes = [Decal(sg * ip["eye_sep"], ip["eye_y"], ip["eye_w"], ip["eye_h"], ip["eye_h"], zero)
            for sg in (-1.0, 1.0)]                                     # image-left eye first
    eye_c = _surface(torch.stack([eyes[0].cx, eyes[1].cx], 1), torch.stack([eyes[0].cy, eyes[1].cy], 1), abc)
    if cfg.align_eyes is not None:        # align by the eyes: the camera absorbs the similarity
        R, s, shift = align_by_eyes(R, s, shift, project(eye_c), cfg.align_eyes)
        px = s * S / 2
    mw = ip["mouth_w"] * (1 + 0.2 * smile)
    my, bend = ip["mouth_y"] - 0.03 * smile, 0.3 * smile - 0.05
    mouth = Decal(zero, my, mw, ip["lip"] * (1 - 0.3 * smile), ip["lip"] + 0.25 * smile + 0.6 * mopen, bend)
    inner = Decal(zero, my, mw * 0.88, 0.04 + 0.1 * mopen, 0.04 + 0.5 * mopen + 0.1 * smile, bend)
    nose_base = Decal(zero, ip["nose_y"] + 0.05, ip["nose_w"], 0.6 * one, 0.25 * one, -0.15 * one)

    lin = lambda a, b, n: torch.linspace(a, b, n, device=device)
    # jaw 0..16: along the head outline (inset), from above ear level round the chin
    phi = torch.deg2rad(torch.cat([lin(-15, 90, 9), lin(90, -15, 9)[1:]]))
    side = torch.cat([-torch.ones(8, device=device), torch.zeros(1, device=device),
                      torch.ones(8, device=device)])
    jaw = torch.stack([side * 0.95 * ip["head_w"][:, None] * phi.cos(),
                       0.95 * ip["head_h"][:, None] * phi.sin().expand(B, -1)], -1)
    # brows: thin arched decals, their 5 points on the mid-line from image-left to right
    bw = 1.25 * ip["eye_w"]
    brows = [Decal(sg * ip["eye_sep"], brow_y - 0.03, bw, ip["brow_t"] / bw, ip["brow_t"] / bw, -0.03 / bw)
             for sg in (-1.0, 1.0)]
    al_b = lin(-0.9, 0.9, 5)[None]
    brow_pts = [torch.stack([br.cx[:, None] + br.w[:, None] * al_b,
                             br.cy[:, None] - br.k[:, None] * br.w[:, None] * al_b ** 2], -1) for br in brows]
    t_eye = torch.tensor([math.pi, -2 * math.pi / 3, -math.pi / 3, 0, math.pi / 3, 2 * math.pi / 3],
                         device=device)
    t_out = torch.tensor([math.pi] + [-math.pi + k * math.pi / 6 for k in range(1, 6)] + [0.0]
                         + [k * math.pi / 6 for k in range(1, 6)], device=device)
    t_in = torch.tensor([math.pi, -3 * math.pi / 4, -math.pi / 2, -math.pi / 4, 0.0,
                         math.pi / 4, math.pi / 2, 3 * math.pi / 4], device=device)
    xy = lambda pair: torch.stack(pair, -1)
    on_face = torch.cat([jaw, brow_pts[0], brow_pts[1]], 1)                  # points 0..26
    # eye corners come first in 300-W order: the image-left eye runs 36 (outer) -> 39 (inner)
    decal_pts = torch.cat([xy(eyes[0].points(t_eye)), xy(eyes[1].points(t_eye)),
                           xy(mouth.points(t_out)), xy(inner.points(t_in))], 1)   # 36..67
    surf = _surface(torch.cat([on_face, decal_pts], 1)[..., 0],
                    torch.cat([on_face, decal_pts], 1)[..., 1], abc)
    # the nose sticks out: bridge 27..30 rises from the surface to the tip, base 31..35 halfway
    n_up = lambda p, h: p + _normal(p, abc) * h[:, None, None]
    bridge_base = _surface(zero[:, None].expand(-1, 4),
                           ip["eye_y"][:, None] + (ip["nose_y"] - ip["eye_y"])[:, None] * lin(0, 1, 4)[None],
                           abc)
    bridge = n_up(bridge_base, ip["nose_p"]) - _normal(bridge_base, abc) * (
        ip["nose_p"][:, None, None] * (1 - lin(0, 1, 4)[None, :, None] ** 1.5))
    nbx, nby = nose_base.points(torch.tensor([math.pi, 3 * math.pi / 4, math.pi / 2, math.pi / 4, 0.0],
                                             device=device))
    nb = n_up(_surface(nbx, nby, abc), 0.45 * ip["nose_p"])
    pts = torch.cat([surf[:, :27], bridge, nb, surf[:, 27:]], 1)       # B,68,3
    kp68 = project(pts)
    kp5 = torch.cat([project(eye_c), kp68[:, [30, 48, 54]]], 1)
    f68 = facing(torch.cat([pts[:, :27], bridge_base, _surface(nbx, nby, abc), pts[:, 36:]], 1))
    vis68 = f68 > VISIBLE_FACING
    vis5 = torch.cat([facing(eye_c) > VISIBLE_FACING, vis68[:, [30, 48, 54]]], 1)

    # ---- layers ----
    img = torch.empty(B, 3, S, S, device=device)
    lab = torch.zeros(B, S, S, dtype=torch.long, device=device)
    # background clutter: a 6x6 random field per image, from the image's own seed, upsampled
    gen = torch.Generator(device="cpu")
    noise_lo = torch.stack([torch.rand(3, 6, 6, generator=gen.manual_seed(int(sd)))
                            for sd in imp["bg_seed"]]).to(device)
    clutter = F.interpolate(noise_lo, size=(S, S), mode="bicubic", align_corners=False)
    img.copy_((_rgb(mp["bg_rgb"]) + cfg.clutter * (clutter - 0.5)).clamp(0, 1))

    # head silhouette (exact projected ellipse) and the front-surface point of every pixel
    M = R @ torch.diag_embed(1 / abc ** 2) @ R.transpose(1, 2) / s[:, None, None] ** 2
    dx, dy = X[None] - shift[:, 0, None, None], Y[None] - shift[:, 1, None, None]
    m = lambda i, j: M[:, i, j, None, None]
    Bq = m(0, 2) * dx + m(1, 2) * dy
    Cq = m(0, 0) * dx ** 2 + 2 * m(0, 1) * dx * dy + m(1, 1) * dy ** 2
    f = (Cq - Bq ** 2 / m(2, 2)).clamp_min(0)
    e = lambda v: v[:, None, None]
    head_a = _ramp((1 - f.sqrt()) * e(px * ip["head_w"]))
    zc = (-Bq + (Bq ** 2 - m(2, 2) * (Cq - 1)).clamp_min(0).sqrt()) / m(2, 2)
    pc = torch.stack([dx, dy, zc], 1)                                  # B,3,S,S camera frame
    lx, ly, lz = (torch.einsum("bji,bjhw->bihw", R, pc) / e(s)[:, None]).unbind(1)
    la, le = mp["light_az"], mp["light_el"]
    light = torch.stack([la.sin() * le.cos(), le.sin(), la.cos() * le.cos()], -1)
    ml = torch.einsum("bij,bj->bi", M, light)       # n.l = (M p).l / |M p|, M symmetric
    mp_norm = torch.einsum("bij,bjhw->bihw", M, pc).square_().sum(1).sqrt_().clamp_min_(1e-8)
    amb = e(mp["ambient"])
    shade = amb + (1 - amb) * (torch.einsum("bi,bihw->bhw", ml, pc) / mp_norm).clamp_min(0)

    hair = col.get("hair", ip["hair_rgb"])
    skin = _rgb(col.get("skin", ip["skin_rgb"]))
    # hair volume behind the head, in the image frame turned by the roll; long hair hangs lower
    cr, sr = e(torch.deg2rad(mp["roll"]).cos()), e(torch.deg2rad(mp["roll"]).sin())
    ux, uy = (cr * dx + sr * dy) / e(s), (-sr * dx + cr * dy) / e(s)
    hx = ux / e(ip["head_w"] * ip["volume"])
    hy = uy / e(ip["head_h"] * ip["volume"]) + 0.08
    hl = e(ip["hair_len"])
    hy = torch.where(hy < 0, hy, hy / (1.0 + 1.2 * hl))
    hair_a = _ramp((1 - torch.sqrt(hx ** 2 + hy ** 2)) * e(px * ip["head_w"]))
    hair_a = hair_a * torch.where(hy > 0.15, (hl > 0.25).float(), torch.ones_like(hy))
    _layer(img, lab, hair_a, _rgb(hair) * 0.8, PART["hair"])
    _layer(img, lab, head_a, skin, PART["skin"])
    # scalp hair (or bangs down to the brows) and the sides of the head
    line = torch.where(e(ip["bangs"]) > 0.5, e(brow_y - 0.06),
                       e(ip["hairline"]) + 0.25 * (lx / e(ip["head_w"])) ** 2)
    scalp = _ramp((line - ly) * e(px) * 1.5)
    sides = _ramp((-lz / e(ip["head_d"]) - 0.05) * e(px)) * (ly < 0.1)
    _layer(img, lab, head_a * torch.maximum(scalp, sides), _rgb(hair), PART["hair"])

    def only(flag, coverage):
        """coverage(i) for the images i whose flag is set, zero elsewhere: rare parts
        (beard, glasses, occluders, ...) cost nothing in the images that lack them."""
        out = torch.zeros(B, S, S, device=device)
        i = flag.bool().nonzero()[:, 0]
        if len(i):
            out[i] = coverage(i)
        return out

    _layer(img, lab, only(ip["beard"], lambda i: _ramp(
        (ly[i] - e(0.4 * ip["nose_y"] + 0.6 * ip["mouth_y"])[i]) * e(px[i])) * head_a[i]
        * (lz[i] > 0.05 * e(ip["head_d"][i]))), _rgb(hair) * 0.7, PART["beard"])
    # wrinkles with age: thin forehead lines (no part label)
    _layer(img, lab, only(ip["age"] > 0.6, lambda i: head_a[i] * (1 - scalp[i]) * e(ip["age"][i] - 0.6) * 1.5
                          * (torch.cos((ly[i] - e(ip["eye_y"][i])) * 90) > 0.92)
                          * (ly[i] < e(brow_y[i]) - 0.08) * (ly[i] > e(brow_y[i]) - 0.28)), skin * 0.6)

    for name, br in zip(("left_brow", "right_brow"), brows):
        _layer(img, lab, br.alpha(lx, ly, px) * head_a, _rgb(hair) * 0.75, PART[name])
    sclera = _rgb(col.get("sclera", 0.95 * one[:, None].expand(B, 3)))
    for name, ey in zip(("left_eye", "right_eye"), eyes):
        ea = ey.alpha(lx, ly, px) * head_a
        _layer(img, lab, ea, sclera, PART[name])
        r, edge = Decal(ey.cx, ey.cy, ey.w * ey.h_up * 0.95, one, one, zero).radius(lx, ly, px)
        _layer(img, lab, _ramp((1 - r) * edge) * ea, _rgb(col.get("iris", ip["iris_rgb"])))
        if "iris" not in col:                         # pupil: 0.45 of the iris radius
            _layer(img, lab, _ramp((0.45 - r) * edge) * ea, 0.05 * skin)
    fa = head_a * (facing(torch.stack([zero, my, zero], -1)[:, None])[:, 0] > 0.0).float()[:, None, None]
    _layer(img, lab, mouth.alpha(lx, ly, px) * fa, _rgb(col.get("lips", ip["lip_rgb"])), PART["mouth"])
    shown = (mopen + smile) > 0.5                     # the inside of the mouth and the teeth
    in_a = only(shown, lambda i: inner.take(i).alpha(lx[i], ly[i], px[i]) * fa[i])
    dark = torch.tensor([[0.3, 0.05, 0.08]], device=device).expand(B, 3)
    _layer(img, lab, in_a, _rgb(col.get("mouth_inside", dark)))
    teeth = Decal(inner.cx, inner.cy, inner.w * 0.8, inner.h_up, inner.h_lo * 0.35, inner.k)
    _layer(img, lab, only(shown, lambda i: teeth.take(i).alpha(lx[i], ly[i], px[i]) * in_a[i]),
           0.92 * _rgb(one[:, None].expand(B, 3)))
    img.mul_(1 - head_a[:, None] + (head_a * shade)[:, None])        # lighting on the head
    # nose, drawn in the image because it stands out of the head: bridge, base, nostrils
    kx, ky = X[None], Y[None]
    nw = (s * ip["nose_w"])[:, None] * torch.tensor([0.2, 0.3, 0.4], device=device)[None]
    nose_a = _capsules_alpha(kx, ky, kp68[:, [27, 31, 33]], kp68[:, [30, 35, 30]], nw[:, [0, 1, 2]],
                             nw[:, [2, 1, 2]] * torch.tensor([[1.1, 1, 1]], device=device), S / 2 * one)
    _layer(img, lab, nose_a, skin * e(0.8 + 0.2 * mp["ambient"])[:, None], PART["nose"])
    nostril = (s * 0.025)[:, None].expand(-1, 2) * vis68[:, [32, 34]]
    _layer(img, lab, _capsules_alpha(kx, ky, kp68[:, [32, 34]], kp68[:, [32, 34]], nostril, nostril,
                                     S / 2 * one), skin * 0.4)
    # glasses: rings around the eyes and a bridge between them
    rings = [Decal(ey.cx, ey.cy, ey.w * 1.7, 0.8 * one, 0.8 * one, zero) for ey in eyes]
    ga = torch.stack([eyes[0].cx + eyes[0].w * 1.65, ip["eye_y"]], -1)[:, None]
    gb = torch.stack([eyes[1].cx - eyes[1].w * 1.65, ip["eye_y"]], -1)[:, None]
    bar = 0.012 * one[:, None]

    def glasses(i):
        frames = [rg.take(i).alpha(lx[i], ly[i], px[i], ring=0.045 / (rg.w[i] * 0.8)) for rg in rings]
        return torch.maximum(torch.maximum(*frames), _capsules_alpha(
            lx[i], ly[i], ga[i], gb[i], bar[i], bar[i], px[i])) * head_a[i]  # frames 0.045 units thick
    _layer(img, lab, only(ip["glasses"], glasses), _rgb(col.get("glasses", ip["glasses_rgb"])), PART["glasses"])
    # occluder: a box in image space
    ox, oy, osz = e(mp["occ_xy"][:, 0]), e(mp["occ_xy"][:, 1]), e(mp["occ_size"])
    occ_a = only(mp["occ"], lambda i: _ramp(
        (1 - torch.maximum((X[None] - ox[i]).abs(), (Y[None] - oy[i]).abs() * 0.6) / osz[i]) * osz[i] * S / 2))
    _layer(img, lab, occ_a, _rgb(mp["occ_rgb"]), PART["occluder"])
    # blur (per-image gaussian sigma, given at 64 px) and sensor noise
    img = _blur(img, mp["blur"] * S / 64)
    noise = _sensor_noise(imp["bg_seed"], S, device)
    img = (img + e(mp["noise"])[:, None] * noise).clamp(0, 1)

    to_px = lambda p: (p + 1) * S / 2 - 0.5

    def visible(kp, v, nose_points):
        """Facing the camera, inside the image, not under an occluder nor behind the nose."""
        inside = (kp >= 0).all(-1) & (kp <= S - 1).all(-1)
        xi, yi = kp[..., 0].round().long().clamp(0, S - 1), kp[..., 1].round().long().clamp(0, S - 1)
        at = lambda a: a[torch.arange(B, device=device)[:, None], yi, xi] > 0.5
        behind_nose = at(nose_a) & ~nose_points
        return v & inside & ~at(occ_a) & ~behind_nose

    kp68, kp5 = to_px(kp68), to_px(kp5)
    is_nose68 = (torch.arange(68, device=device) >= 27) & (torch.arange(68, device=device) <= 35)
    is_nose5 = torch.arange(5, device=device) == 2
    return dict(image=img, kp68=kp68, vis68=visible(kp68, vis68, is_nose68), kp5=kp5,
                vis5=visible(kp5, vis5, is_nose5), parts=lab)


_NOISE_BANK: dict = {}


def _sensor_noise(seeds, S: int, device) -> torch.Tensor:
    """Gaussian noise (B, 3, S, S) that depends only on each image's own seed: one of 64 fixed
    noise fields, cyclically shifted by a seed-given offset (cheaper than one generator per
    image, and independent of the batch the image is rendered in)."""
    key = (S, str(device))
    if key not in _NOISE_BANK:
        _NOISE_BANK[key] = torch.randn(64, 3, S, S, generator=torch.Generator().manual_seed(12345)).to(device)
    bank = _NOISE_BANK[key]
    sd = torch.as_tensor(np.asarray(seeds) % (64 * S * S), device=device)
    k, dy, dx = sd % 64, (sd // 64) % S, (sd // (64 * S)) % S
    ar = torch.arange(S, device=device)
    rows, cols = (ar[None] + dy[:, None]) % S, (ar[None] + dx[:, None]) % S
    return bank[k[:, None, None, None], torch.arange(3, device=device)[None, :, None, None],
                rows[:, None, :, None], cols[:, None, None, :]]


def _blur(img, sigma):
    if float(sigma.max()) < 0.05:
        return img
    B, C, S, _ = img.shape
    rad = max(1, int(math.ceil(3 * float(sigma.max()))))
    x = torch.arange(-rad, rad + 1, device=img.device, dtype=img.dtype)
    k = torch.exp(-x[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(C, 0)            # (B*C, K)
    y = F.pad(img.reshape(1, B * C, S, S), (rad, rad, rad, rad), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=B * C)
    y = F.conv2d(y, k[:, None, :, None], groups=B * C)
    return y.view(B, C, S, S)


def attributes(idp: dict, imp: dict) -> tuple[np.ndarray, np.ndarray]:
    """Binary (B, len(BINARY_ATTRIBUTES)) and continuous (B, len(CONTINUOUS_ATTRIBUTES))."""
    hc = idp["hair_cat"]
    binary = np.stack([idp["male"], idp["age"] < 0.5, imp["smile"] > 0.5, imp["mouth_open"] > 0.25,
                       hc == 0, hc == 1, hc == 2, hc == 3, idp["bangs"], idp["beard"],
                       idp["glasses"]], 1).astype(np.float32)
    cont = np.stack([idp["age"], imp["smile"], imp["mouth_open"], idp["hair_len"], idp["skin_tone"],
                     imp["yaw"], imp["pitch"], imp["roll"], imp["zoom"]], 1).astype(np.float32)
    return binary, cont


def render_faces(indices, identities, seed: int = 0, size: int = 64, cfg: SynthConfig = SynthConfig(),
                 device="cpu", identity_seed: int = 0, colours: dict | None = None,
                 overrides: dict | None = None) -> dict[str, torch.Tensor]:
    """Render images ``indices`` (per-image randomness) of identities ``identities``.

    ``overrides`` fixes parameters for all images (e.g. ``{"yaw": 45.0, "beard": True}``);
    useful for sweeps and tests. Returns the tensors of :func:`render` plus ``binary``,
    ``continuous`` attributes, ``identity`` and ``pose`` (yaw, pitch, roll in degrees).
    """
    indices, identities = np.asarray(indices), np.asarray(identities)
    if indices.shape != identities.shape or indices.ndim != 1:
        raise ValueError("indices and identities must be 1-D arrays of the same length")
    idp, imp = identity_params(identities, identity_seed), image_params(indices, seed, cfg)
    for k, v in (overrides or {}).items():
        d = idp if k in idp else imp if k in imp else None
        if d is None:
            raise KeyError(f"unknown parameter {k!r}; known: {sorted(idp) + sorted(imp)}")
        d[k] = np.broadcast_to(np.asarray(v, dtype=d[k].dtype), d[k].shape).copy()
    out = render(idp, imp, size, device, cfg, colours)
    binary, cont = attributes(idp, imp)
    dev = out["image"].device
    out.update(binary=torch.from_numpy(binary).to(dev), continuous=torch.from_numpy(cont).to(dev),
               identity=torch.from_numpy(identities.astype(np.int64)).to(dev),
               pose=torch.from_numpy(np.stack([imp["yaw"], imp["pitch"], imp["roll"]], 1)
                                     .astype(np.float32)).to(dev))
    return out



def landmark_part_agreement(out: dict, mouth_tol: float = 2.0) -> dict[str, float]:
    """How often the visible 5 landmarks sit on their part in the rendered part map:
    eye centres on eye pixels, nose tip on nose pixels (exact pixel), mouth corners within
    ``mouth_tol`` px of a mouth pixel (the mouth tapers to a point at its corners)."""
    parts, kp, vis = out["parts"], out["kp5"], out["vis5"]
    B, S = parts.shape[0], parts.shape[-1]
    xi, yi = kp[..., 0].round().long().clamp(0, S - 1), kp[..., 1].round().long().clamp(0, S - 1)
    at = parts[torch.arange(B)[:, None], yi, xi]
    want = torch.tensor([PART["left_eye"], PART["right_eye"], PART["nose"]])
    res = {}
    for j, name in enumerate(("left_eye", "right_eye", "nose_tip")):
        v = vis[:, j]
        res[name] = float((at[v, j] == want[j]).float().mean()) if v.any() else float("nan")
    grid = torch.stack(torch.meshgrid(torch.arange(S), torch.arange(S), indexing="xy"), -1).float()
    hits = []
    for b in range(B):
        mouth = grid[parts[b] == PART["mouth"]]
        for j in (3, 4):
            if vis[b, j]:
                hits.append(len(mouth) > 0 and bool((mouth - kp[b, j]).norm(dim=-1).min() <= mouth_tol))
    res["mouth_corners"] = float(np.mean(hits)) if hits else float("nan")
    return res
