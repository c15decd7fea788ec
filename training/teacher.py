"""Stage 1b: the masked anatomical inpainting teacher (VUAD-style) and its anomaly maps.

A residual U-Net learns to fill hidden regions of *vessel maps of good photographs* from their
context (grid cells and soft free-form blobs, hidden by zeros, grey or a smear: see masking.py).

Inference compares what should be there with what is visible:
- expected x̂: the prior's reconstruction (one pass, the authors' inference) of the *anatomy*
  extractor's vessel map — that extractor was trained to see vessels through label-free
  perturbations, so x̂ is the vasculature the photo should show;
- visible x: the *visible-vessel* extractor's map (mild augmentation: it loses degraded vessels),
  capped by the anatomy map, weighted by how visible each vessel is at two scales of the 512-px
  photo, a fine one (thin vessels: what blur and JPEG take first) and a coarse one (all calibres:
  what veils and shadows take): the smaller of its depth (black-hat, grey levels) and its Weber
  contrast (depth over the local background), each relative to the training pool's median, times
  an exposure term that fades vessels where the photo is much brighter (washed out, v3.5) or much
  darker (under-exposed, v3.6) than its own median;
- anomaly: |G(x̂) − G(x)| / (max(G(x̂), G(x)) + 0.02), G a Gaussian over a few vessel spacings,
  the larger of the two scales': where the photo shows less, the share of its expected vessels it
  does not show; where it shows more, the share of its visible "vessels" that anatomy does not
  explain (block edges, streaks).
No quality label or degradation mask is ever used. Why each part is there, with the measured
alternatives: models/teacher/MODEL_CARD.md and CHANGELOG.md.

    efiqa train teacher [--data DIR] [--steps N] [--init INPAINTER_PT] [--device cuda]
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from efiqa.fov import Fov
from efiqa.preprocess import Crop

from . import vessels as vessel_stage
from .data import Photo, data_root, load_photo, to_geometry, training_pool
from .masking import APPLY_P, BLOB_P, FILLS, blob_mask, fill, random_grid_mask
from .nets.unet import ResidualInpainter, UNet

MAP_SIZE = 256          # side of the vessel map the teacher works on (FOV square)
BASE, LEVELS = 16, 5
GRID = 16               # patch grid of the runtime
HOLE = 64               # px (of MAP_SIZE): side of the hidden checkerboard cells at inference
MISSING_SIGMA = 10.0    # px: expected and visible vasculature are compared as local densities
EXPECTED_FLOOR = 0.02   # keeps the relative deficit finite where the prior expects no vessels
DEPTH_KERNELS = (7, 17)  # px (of the 512-px photo): closing elements of the vessel-depth measure
VISIBLE_K = 0.6         # a vessel counts as fully visible from 0.6× the clean photos' median vessel depth
WEBER_OFFSET = 10.0     # grey levels added to the background: Weber contrast stays finite where it is dark
WASHED_OUT = (1.4, 2.2)  # local green / the photo's median: vessels fully visible below 1.4×, not at all from 2.2×
UNDEREXPOSED = (0.3, 0.7)  # local green / the photo's median: vessels not visible at all below 0.3×, fully from 0.7×


def hole_patterns(size: int = MAP_SIZE, cell: int = HOLE) -> list[np.ndarray]:
    """Four hide-masks (1 = hidden) whose union covers every pixel exactly twice: a checkerboard,
    its complement, and both shifted by half a cell, so no pixel is only ever seen near a hole edge."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for shift in (0, cell // 2):
        board = (((yy + shift) // cell + (xx + shift) // cell) % 2).astype(np.float32)
        out += [board, 1 - board]
    return out


@torch.no_grad()
def expected_vessels(model: ResidualInpainter, vmap: np.ndarray) -> np.ndarray:
    """The prior's redraw of every pixel from its context only (mean over the passes that hid it)."""
    acc = np.zeros_like(vmap)
    count = np.zeros_like(vmap)
    for hole in hole_patterns(vmap.shape[0]):
        x = torch.from_numpy((vmap * (1 - hole)).astype(np.float32))[None, None]
        acc += np.clip(model(x)[0, 0].numpy(), 0, 1) * hole
        count += hole
    return acc / np.maximum(count, 1)


@torch.no_grad()
def reconstruct(model: ResidualInpainter, vmap: np.ndarray) -> np.ndarray:
    """One pass of the prior over an intact map (the authors' inference): a copy with gaps closed."""
    return np.clip(model(torch.from_numpy(vmap.astype(np.float32))[None, None])[0, 0].numpy(), 0, 1)


def _densities(expected: np.ndarray, seen: np.ndarray, fov: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Local vessel densities (Gaussian σ px) of the two maps, each masked to the FOV first."""
    blur = lambda a: cv2.GaussianBlur(np.where(fov, a, 0).astype(np.float32), (0, 0), sigma)  # noqa: E731
    return blur(expected), blur(seen)


def missing_vasculature(expected: np.ndarray, seen: np.ndarray, fov: np.ndarray,
                        sigma: float = MISSING_SIGMA, floor: float = EXPECTED_FLOOR) -> np.ndarray:
    """Share of the expected local vessel density that the photo does not show, 0 outside the FOV."""
    e, v = _densities(expected, seen, fov, sigma)
    rel = np.maximum(e - v, 0) / (e + floor)
    return np.where(fov, rel, 0).astype(np.float32)


def vessel_anomaly(expected: np.ndarray, seen: np.ndarray, fov: np.ndarray, sigma: float = MISSING_SIGMA,
                   floor: float = EXPECTED_FLOOR) -> np.ndarray:
    """Relative disagreement of expected and visible vessel density, |E − V| / (max(E, V) + floor),
    0 outside the FOV: where the photo shows less, exactly :func:`missing_vasculature`; where it
    shows more, the share of the visible "vasculature" that anatomy does not explain (JPEG block
    edges, lash streaks). The density-level form of the authors' two-sided |x − x̂|."""
    e, v = _densities(expected, seen, fov, sigma)
    rel = np.abs(e - v) / (np.maximum(e, v) + floor)
    return np.where(fov, rel, 0).astype(np.float32)


def vessel_depth(rgb: np.ndarray, kernel: int) -> np.ndarray:
    """How much darker than their surround the vessels are, in grey levels of the green channel
    (black-hat with a ``kernel``-px disc): absolute contrast, which shadow, haze and glare take away
    even where the extractor, which standardises the photo, still traces a vessel. A kernel just
    wider than thin vessels measures only them (blur, JPEG and noise change them first)."""
    return _depth_and_background(rgb, kernel)[0]


def _depth_and_background(rgb: np.ndarray, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    green = rgb[..., 1].astype(np.float32)
    background = cv2.morphologyEx(green, cv2.MORPH_CLOSE, k)  # the surround with the vessels closed over
    return background - green, background


def vessel_contrast(rgb: np.ndarray, kernel: int) -> np.ndarray:
    """Weber contrast of the vessels: depth over the local background (+ WEBER_OFFSET grey levels).
    A veil or an over-exposure lifts the background, so a vessel whose depth in grey levels survives
    (or grows, under a gain) still loses contrast here; a plain darkening keeps it (depth catches that)."""
    return weber(*_depth_and_background(rgb, kernel))


def weber(depth: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Depth over the local background plus WEBER_OFFSET grey levels."""
    return depth / (background + WEBER_OFFSET)


def brightness_visibility(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """How well exposed each pixel is, in [0, 1], from the green channel (smoothed σ 4 px) relative
    to the photo's in-FOV median. Washed out: 1 up to WASHED_OUT[0] × the median, falling linearly
    to 0 at WASHED_OUT[1] × (over-exposure, flare, haze, clipping compress the vessels' contrast
    even where they are still faintly traceable). Under-exposed (teacher v3.6): 0 below
    UNDEREXPOSED[0] × the median, rising to 1 at UNDEREXPOSED[1] × (a shadowed or darkened region
    keeps its Weber contrast on paper, but its detail sits in a few grey levels under sensor noise
    and compression, and graders call it badly illuminated). ``UNDEREXPOSED = None``: v3.5."""
    green = rgb[..., 1].astype(np.float32)
    median = float(np.median(green[fov_mask])) + 1.0 if fov_mask.any() else 1.0
    return exposure_visibility(cv2.GaussianBlur(green, (0, 0), 4) / median)


def exposure_visibility(level: np.ndarray) -> np.ndarray:
    """The WASHED_OUT and UNDEREXPOSED ramps applied to a brightness ``level`` (1 = the reference)."""
    lo, hi = WASHED_OUT
    vis = np.clip((hi - level) / (hi - lo), 0, 1)
    if UNDEREXPOSED is not None:
        dark_lo, dark_hi = UNDEREXPOSED
        vis = np.minimum(vis, np.clip((level - dark_lo) / (dark_hi - dark_lo), 0, 1))
    return vis


def visibility(rgb: np.ndarray, kernel: int, depth_ref: float, contrast_ref: float | None = None) -> np.ndarray:
    """How visible a vessel at each pixel is, in [0, 1], at one DEPTH_KERNELS scale: its depth, full
    from VISIBLE_K × the clean photos' median depth; with ``contrast_ref`` (teacher v3.5) also its
    Weber contrast, full from VISIBLE_K × their median contrast; the smaller of the two."""
    depth, background = _depth_and_background(rgb, kernel)
    vis = np.clip(depth / (VISIBLE_K * depth_ref), 0, 1)
    if contrast_ref is not None:
        vis = np.minimum(vis, np.clip(weber(depth, background) / (VISIBLE_K * contrast_ref), 0, 1))
    return vis


def visible_vessels(vmap: np.ndarray, depth: np.ndarray, reference_depth: float) -> np.ndarray:
    """Vessel probability weighted by how visible the vessel is: full from VISIBLE_K × the clean
    photos' median vessel depth, fading linearly to 0 at no contrast (depth only: teacher ≤ v3.4)."""
    return (vmap * np.clip(depth / (VISIBLE_K * reference_depth), 0, 1)).astype(np.float32)


def visible_at_scales(prob: np.ndarray, rgb: np.ndarray, references: list[float],
                      contrasts: list[float] | None = None, fov: np.ndarray | None = None) -> list[np.ndarray]:
    """The visible-vessel map (MAP_SIZE²) at each DEPTH_KERNELS scale. With ``contrasts`` (v3.5):
    weighted by depth and Weber contrast, and by :func:`brightness_visibility` (``fov``: the FOV
    mask at any size, default the whole frame); without: by depth only."""
    if contrasts is None:
        return [to_map(prob * visibility(rgb, k, ref)) for k, ref in zip(DEPTH_KERNELS, references)]
    h, w = rgb.shape[:2]
    inside = np.ones((h, w), bool) if fov is None else \
        cv2.resize(fov.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    bright = brightness_visibility(rgb, inside)
    return [to_map(prob * visibility(rgb, k, ref, c) * bright) for k, ref, c in zip(DEPTH_KERNELS, references, contrasts)]


def disagreement(expected: np.ndarray, traced: np.ndarray, rgb: np.ndarray, fov: np.ndarray,
                 references: list[float], floor: float = EXPECTED_FLOOR,
                 contrasts: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(anomaly, visible map), both MAP_SIZE²: the traced vessels (photo resolution) weighted by
    their visibility at each scale, compared with ``expected``; the larger anomaly of the scales is
    kept, and the visible map is what shows at every scale."""
    seen_at = visible_at_scales(traced, rgb, references, contrasts, fov)
    return (np.maximum.reduce([vessel_anomaly(expected, v, fov, floor=floor) for v in seen_at]),
            np.minimum.reduce(seen_at))


def to_map(a: np.ndarray) -> np.ndarray:
    """A photo-resolution map brought to MAP_SIZE² (area average)."""
    return cv2.resize(a.astype(np.float32), (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_AREA)


def build_model(base: int = BASE) -> ResidualInpainter:
    return ResidualInpainter(base, LEVELS)


def load_model(path: str | Path) -> ResidualInpainter:
    state = torch.load(path, map_location="cpu", weights_only=True)
    m = build_model(int(state["net.down.0.0.weight"].shape[0]))  # width read off the weights
    m.load_state_dict(state)
    return m.eval()


def vessel_map(extractor: UNet, photo: Photo) -> tuple[np.ndarray, np.ndarray]:
    """(vessel probability MAP_SIZE², FOV mask MAP_SIZE²) of a photo in runtime geometry."""
    return to_map(vessel_stage.predict(extractor, photo)), map_fov(photo)


def map_fov(photo: Photo) -> np.ndarray:
    fov = cv2.resize(photo.fov_mask.astype(np.uint8), (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_NEAREST)
    return fov.astype(bool)


def _augment(vmap: np.ndarray, fov: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """360° rotation, flips, ±10 % scale, random circular FOV crop, vessel-contrast jitter."""
    s = vmap.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(0, 360), rng.uniform(0.9, 1.1))
    vmap = cv2.warpAffine(vmap, m, (s, s), flags=cv2.INTER_LINEAR)
    fov = cv2.warpAffine(fov.astype(np.uint8), m, (s, s), flags=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        vmap, fov = vmap[:, ::-1], fov[:, ::-1]
    if rng.random() < 0.5:  # a smaller, shifted circular FOV, as other cameras and framings give
        circ = np.zeros((s, s), np.uint8)
        r = s / 2 * rng.uniform(0.7, 1.0)
        c = s / 2 + rng.uniform(-0.15, 0.15, size=2) * s
        cv2.circle(circ, (int(c[0]), int(c[1])), int(r), 1, -1)
        fov = fov & circ
    vmap = np.clip(vmap, 0, 1) ** rng.uniform(0.8, 1.25)
    fov = fov.astype(bool)
    return np.where(fov, vmap, 0).astype(np.float32), fov


def training_sample(vmap: np.ndarray, fov: np.ndarray, rng: np.random.Generator, progress: float,
                    fills: tuple[str, ...] = FILLS, blob_p: float = BLOB_P) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intact target, masked input, FOV) of one augmented sample at training ``progress`` ∈ [0, 1]:
    masked with probability APPLY_P, by soft blobs (``blob_p``) or the recipe's grid."""
    x, f = _augment(vmap, fov, rng)
    v = x
    if rng.random() < APPLY_P:
        keep = blob_mask(MAP_SIZE, rng) if rng.random() < blob_p else random_grid_mask(MAP_SIZE, rng, progress)
        v = fill(x, keep, rng, fills) * f
    return x, v, f


def pool_maps(data: str | None, vessels_path: str | Path, progress: bool = True
              ) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """The training pool's names and (vessel map, FOV) pairs: what the prior learns from."""
    from tqdm import tqdm

    root = data_root(data)
    extractor = vessel_stage.load_model(vessels_path)
    names = training_pool(root)
    return names, [vessel_map(extractor, load_photo(n, vessel_stage.SIZE, root)) for n in
                   tqdm(names, desc="vessel maps", disable=not progress)]


def train(data: str | None = None, vessels_path: str | Path = "models/teacher/vessels.pt", steps: int = 1500,
          batch: int = 6, seed: int = 0, out: str | Path = "models/teacher/inpainter.pt",
          progress: bool = True, device: str = "cpu", init: str | Path | None = None, lr: float = 1e-3) -> dict:
    """Vessel maps of the training pool (``data.training_pool``) → inpainter weights at ``out``;
    returns training metrics. ``init``: continue from an existing prior's weights (a warm start)."""
    names, maps = pool_maps(data, vessels_path, progress)
    t0 = time.time()
    start = load_model(init) if init else None
    init_sha = hashlib.sha256(Path(init).read_bytes()).hexdigest() if init else None
    model, loss = fit(maps, steps=steps, batch=batch, seed=seed, progress=progress, device=device, lr=lr, init=start)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return {"hole_recovery": hole_recovery(model, maps), "train_images": names, "steps": steps, "batch": batch, "seed": seed, "lr": lr,
            "init": {"path": str(init), "sha256": init_sha} if init else None, "map_size": MAP_SIZE,
            "base": int(model.net.down[0][0].weight.shape[0]), "levels": LEVELS, "final_mse": loss, "device": device, "fills": list(FILLS),
            "apply_p": APPLY_P, "blob_p": BLOB_P,
            "params": sum(p.numel() for p in model.parameters()), "train_seconds": round(time.time() - t0, 1)}


def fit(maps: list[tuple[np.ndarray, np.ndarray]], steps: int, batch: int = 6, seed: int = 0,
        progress: bool = True, base: int = BASE, fills: tuple[str, ...] = FILLS, device: str = "cpu",
        lr: float = 1e-3, blob_p: float = BLOB_P, init: ResidualInpainter | None = None) -> tuple[ResidualInpainter, float]:
    """Masked-inpainting training on (vessel map, FOV) pairs; MSE inside the FOV. Returns (model, last loss).

    Each sample is masked with probability APPLY_P (grid N∈[4, 32], ratio schedule), its hidden
    cells filled by one of ``fills``; the target is always the intact map."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = (init if init is not None else build_model(base)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="teacher", disable=not progress, mininterval=2)
    loss_value = float("nan")
    for step in bar:
        xs, ins, fs = [], [], []
        for i in rng.integers(len(maps), size=batch):
            x, v, f = training_sample(*maps[i], rng, step / steps, fills, blob_p)
            xs.append(x)
            ins.append(v)
            fs.append(f)
        x = torch.from_numpy(np.stack(xs)[:, None]).to(device)
        inp = torch.from_numpy(np.stack(ins)[:, None]).to(device)
        fov = torch.from_numpy(np.stack(fs)[:, None].astype(np.float32)).to(device)
        model.train()
        recon = model(inp)
        loss = (((recon - x) ** 2) * fov).sum() / fov.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0 or step == steps - 1:
            loss_value = float(loss.item())
            bar.set_postfix(mse=f"{loss_value:.4f}")
    return model.cpu().eval(), loss_value


@torch.no_grad()
def hole_recovery(model: ResidualInpainter, maps: list[tuple[np.ndarray, np.ndarray]], radii=(16, 32, 48),
                  seed: int = 0) -> dict:
    """Label-free check of the prior: hide a disc of a clean map and measure how much of its
    vasculature the model redraws (sum x̂ / sum x inside the disc; 1 = all, identity ≈ what was left).

    "hard": the disc is zeroed (what training masks look like); "soft": vessels fade towards the
    centre (σ = r/4), as they do where a photo is degraded. A prior that fills hard holes but not
    soft ones copies its input wherever the input is not exactly zero."""
    rng = np.random.default_rng(seed)
    out: dict = {"hard": {}, "soft": {}}
    for r in radii:
        rec: dict = {"hard": [], "soft": []}
        for v, f in maps:
            ys, xs = np.nonzero(cv2.erode(f.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)))
            if not len(ys):
                continue
            k = rng.integers(len(ys))
            disc = np.zeros_like(v)
            cv2.circle(disc, (int(xs[k]), int(ys[k])), r, 1, -1)
            inside = disc > 0
            if v[inside].sum() < 1e-3:
                continue
            for kind, keep in (("hard", 1 - disc), ("soft", 1 - cv2.GaussianBlur(disc, (0, 0), r / 4))):
                x = torch.from_numpy((v * keep).astype(np.float32))[None, None]
                xh = np.clip(model.eval()(x)[0, 0].numpy(), 0, 1)
                rec[kind].append(float(xh[inside].sum() / v[inside].sum()))
        for kind in rec:
            out[kind][str(r)] = float(np.median(rec[kind])) if rec[kind] else float("nan")
    return out


@dataclass
class TeacherOutput:
    vessels: np.ndarray        # MAP_SIZE² visible vessels: probability × visibility (what the photo shows)
    reconstruction: np.ndarray  # MAP_SIZE² expected vasculature x̂: the prior's reconstruction of the anatomy map
    anomaly: np.ndarray        # MAP_SIZE² relative expected-vs-visible disagreement in [0, 1), 0 outside the FOV
    fov: np.ndarray            # MAP_SIZE² bool
    patch_score: np.ndarray    # GRID² mean anomaly per cell (in-FOV pixels)
    patch_fraction: np.ndarray  # GRID² fraction of in-FOV pixels with anomaly > tau
    vessel_density: np.ndarray  # GRID² mean visible-vessel map (without any expectation)
    coverage: np.ndarray       # GRID² in-FOV fraction per cell
    crop: Crop
    fov_circle: Fov


@dataclass
class TeacherParts:
    """What the teacher's networks see in one photo, before any visibility rule is applied."""

    photo: Photo               # the photo in the extractors' geometry (vessels.SIZE²)
    anatomy: np.ndarray        # vessels.SIZE² the anatomy extractor's vessel probability
    expected: np.ndarray       # MAP_SIZE² the prior's reconstruction of the anatomy map (x̂)
    traced: np.ndarray         # vessels.SIZE² the visible extractor's probability, capped by anatomy


CONFIG = "teacher.json"
#: median vessel depth (grey levels) of clean photos until ``calibrate`` measures it
DEFAULT_DEPTH = 10.0
#: a typical green level behind the vessels: gives the default Weber contrast with DEFAULT_DEPTH
DEFAULT_BACKGROUND = 100.0


class Teacher:
    """Photo → what should be there (anatomy) vs what is visible → their disagreement → patch scores.

    Two vessel extractors share DRIVE's labels: the *visible* one (mild augmentation) loses vessels
    where a photo is degraded, further weighted by the vessels' measured contrast; the *anatomy*
    one (trained through label-free perturbations) keeps finding the vessels that are there, and
    the masked-inpainting prior reconstructs that map (closing its gaps). The anomaly is their
    relative disagreement (:func:`vessel_anomaly`), mostly the share of the expected vasculature
    the photo does not show.

    ``config`` holds what was calibrated on clean training photos: ``vessel_depth`` and
    ``vessel_contrast`` (their median vessel depth and Weber contrast, one per DEPTH_KERNELS scale;
    a config without ``vessel_contrast`` gives teacher v3.4's depth-only visibility), ``tau`` (pixel anomaly threshold), ``phi`` (fraction of anomalous pixels that
    flags a patch) and ``mean_threshold`` (the same false-positive budget for the mean score).
    """

    def __init__(self, vessels: str | Path | UNet, anatomy: str | Path | UNet,
                 inpainter: str | Path | ResidualInpainter, config: dict | None = None) -> None:
        load = lambda m: m.eval() if isinstance(m, UNet) else vessel_stage.load_model(m)  # noqa: E731
        self.extractor, self.anatomy = load(vessels), load(anatomy)
        self.inpainter = inpainter.eval() if isinstance(inpainter, ResidualInpainter) else load_model(inpainter)
        self.config = {"tau": 0.02, "phi": 0.9, "mean_threshold": float("inf"),
                       "vessel_depth": [DEFAULT_DEPTH] * len(DEPTH_KERNELS), **(config or {})}
        for key in ("vessel_depth", "vessel_contrast"):
            value = self.config.get(key)
            if value is not None and len(np.atleast_1d(value)) != len(DEPTH_KERNELS):
                raise ValueError(f"teacher.json holds {value!r} as {key}: one reference per depth scale "
                                 f"{DEPTH_KERNELS} is needed (recalibrate: efiqa train teacher --calibrate-only)")
        self.tau = float(self.config["tau"])

    def __call__(self, bgr: np.ndarray, name: str = "") -> TeacherOutput:
        return self.judge(self.parts(bgr, name))

    @torch.no_grad()
    def parts(self, bgr: np.ndarray, name: str = "") -> TeacherParts:
        """The networks' share of the work (the slow part): photo, anatomy, expected and traced maps."""
        photo = to_geometry(bgr, vessel_stage.SIZE, name)
        anatomy = vessel_stage.predict(self.anatomy, photo)
        expected = reconstruct(self.inpainter, to_map(anatomy))
        # a vessel counts as visible only as far as anatomy puts one there: a slight blur makes the
        # visible extractor *more* confident of thin vessels, which would hide the contrast it takes
        traced = np.minimum(vessel_stage.predict(self.extractor, photo), anatomy)
        return TeacherParts(photo, anatomy, expected, traced)

    def judge(self, parts: TeacherParts) -> TeacherOutput:
        """Expected vs visible vasculature of :meth:`parts` → anomaly and patch scores (fast, no network)."""
        photo, expected, fov = parts.photo, parts.expected, map_fov(parts.photo)
        anomaly, seen = disagreement(expected, parts.traced, photo.rgb, fov, self.config["vessel_depth"],
                                     contrasts=self.config.get("vessel_contrast"))
        score, frac, cov = pool_cells(anomaly, fov, GRID, self.tau)
        density = pool_cells(seen, fov, GRID, 0.0)[0]
        return TeacherOutput(seen, expected, anomaly, fov, score, frac, density, cov, photo.crop, photo.fov)

    @classmethod
    def load(cls, folder: str | Path) -> "Teacher":
        folder = Path(folder)
        config = json.loads((folder / CONFIG).read_text()) if (folder / CONFIG).is_file() else None
        return cls(folder / "vessels.pt", folder / "anatomy.pt", folder / "inpainter.pt", config)


def reference_depth(teacher: "Teacher", photos: list[tuple[str, np.ndarray]]) -> tuple[list[float], list[float]]:
    """Median vessel depth (grey levels) and Weber contrast at confidently traced vessels of clean
    photos, per scale."""
    depths: list[list[np.ndarray]] = [[] for _ in DEPTH_KERNELS]
    contrasts: list[list[np.ndarray]] = [[] for _ in DEPTH_KERNELS]
    for name, bgr in photos:
        photo = to_geometry(bgr, vessel_stage.SIZE, name)
        traced = (vessel_stage.predict(teacher.extractor, photo) > 0.5) & photo.fov_mask
        for d_acc, c_acc, k in zip(depths, contrasts, DEPTH_KERNELS):
            depth, background = _depth_and_background(photo.rgb, k)
            d_acc.append(depth[traced])
            c_acc.append(weber(depth, background)[traced])
    median = lambda parts, default: float(np.median(np.concatenate(parts))) if sum(map(len, parts)) else default  # noqa: E731
    return ([median(d, DEFAULT_DEPTH) for d in depths],
            [median(c, DEFAULT_DEPTH / (DEFAULT_BACKGROUND + WEBER_OFFSET)) for c in contrasts])


def calibrate(teacher: "Teacher", photos: list[tuple[str, np.ndarray]], fp_budget: float = 0.05,
              tau: float = 0.02) -> dict:
    """Label-free decision rule from clean (name, BGR photo) pairs only: flag at most ``fp_budget`` of their patches.

    Recipe: pixel anomaly > 0.02 in ≥ 90 % of a patch. On our maps that flags about half of all clean
    patches, so tau and phi are re-derived from clean photos: tau = 90th percentile of clean pixel
    anomalies, phi = (1 − budget) quantile of clean patch fractions.
    """
    teacher.config["vessel_depth"], teacher.config["vessel_contrast"] = reference_depth(teacher, photos)
    outs = [teacher(bgr, name) for name, bgr in photos]
    pixels = np.concatenate([o.anomaly[o.fov] for o in outs])
    recipe = np.concatenate([pool_cells(o.anomaly, o.fov, GRID, tau)[1][o.coverage >= 0.5] for o in outs])
    # The recipe's pixel threshold (0.02) is below almost every clean pixel of our maps (reconstructions
    # are smooth, so |x − x̂| is rarely that small): tau becomes the clean pixels' 90th percentile instead.
    tau_clean = max(float(np.quantile(pixels, 0.9)), 1e-3)  # a deficit below 0.001 is numerical noise
    fracs = [pool_cells(o.anomaly, o.fov, GRID, tau_clean)[1][o.coverage >= 0.5] for o in outs]
    f = np.concatenate(fracs)
    m = np.concatenate([o.patch_score[o.coverage >= 0.5] for o in outs])
    phi = max(float(np.quantile(f, 1 - fp_budget)), 0.01)  # never "≥ 0": that would flag every patch
    return {"vessel_depth": teacher.config["vessel_depth"], "vessel_contrast": teacher.config["vessel_contrast"],
            "tau": tau_clean, "phi": phi,
            "mean_threshold": float(np.quantile(m, 1 - fp_budget)),
            "image_threshold": float(np.quantile([x.mean() for x in fracs], 0.95)), "fp_budget": fp_budget,
            "recipe_tau": tau, "clean_fpr_recipe_rule": float((recipe >= 0.9).mean()),
            "calibration_photos": [n for n, _ in photos]}

def pool_cells(anomaly: np.ndarray, fov: np.ndarray, grid: int, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: mean anomaly over in-FOV pixels, fraction of them above ``tau``, FOV coverage."""
    s = anomaly.shape[0] // grid
    f = fov.astype(np.float32).reshape(grid, s, grid, s)
    a = anomaly.reshape(grid, s, grid, s)
    n = f.sum(axis=(1, 3))
    safe = np.maximum(n, 1)
    score = (a * f).sum(axis=(1, 3)) / safe
    frac = ((a > tau) * f).sum(axis=(1, 3)) / safe
    return score.astype(np.float32), frac.astype(np.float32), (n / (s * s)).astype(np.float32)


def write_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def finish(folder: Path, data: str | None = None) -> dict:
    """After training: calibrate the decision rule and fit the classical baseline on the training
    pool's photos as they are (gradable by eye, not known to be flawless: every IDRiD photo shows
    diabetic retinopathy); writes teacher.json and baseline.json into ``folder``."""
    from efiqa.imageio import read_image

    from .baseline import ClassicalBaseline
    from .data import resolve, to_geometry

    root = data_root(data)
    originals = [(n, read_image(resolve(n, root))) for n in training_pool(root)]
    model = Teacher(folder / "vessels.pt", folder / "anatomy.pt", folder / "inpainter.pt")
    config = calibrate(model, originals)
    write_json(config, folder / CONFIG)
    ClassicalBaseline.fit([to_geometry(bgr, 512, n) for n, bgr in originals]).save(folder / "baseline.json")
    return config
