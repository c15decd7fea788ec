"""Stage 1b: the masked anatomical inpainting teacher (VUAD-style) and its anomaly maps.

A residual U-Net learns to fill hidden regions of *vessel maps of good photographs* from their
context (grid cells and soft free-form blobs, hidden by zeros, grey or a smear: see masking.py).

Inference compares what should be there with what is visible:
- expected x̂: the prior's reconstruction (one pass, the authors' inference) of the *anatomy*
  extractor's vessel map — that extractor was trained to see vessels through label-free
  perturbations, so x̂ is the vasculature the photo should show;
- visible x: the *visible-vessel* extractor's map (mild augmentation: it loses degraded vessels),
  capped by the anatomy map, weighted by the vessels' measured contrast (black-hat depth relative to clean photos) at two
  scales of the 512-px photo: a fine one (thin vessels: what blur and JPEG take first) and a
  coarse one (all calibres: what veils and shadows take);
- anomaly: |G(x̂) − G(x)| / (max(G(x̂), G(x)) + 0.02), G a Gaussian over a few vessel spacings,
  the larger of the two scales': where the photo shows less, the share of its expected vessels it
  does not show; where it shows more, the share of its visible "vessels" that anatomy does not
  explain (block edges, streaks).
No quality label or degradation mask is ever used. Why each part is there, with the measured
alternatives: models/teacher/MODEL_CARD.md and CHANGELOG.md.

    efiqa train teacher [--data DIR] [--steps N] [--device cuda]
"""
from __future__ import annotations

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
from .data import TEACHER_TRAIN, Photo, data_root, load_photo, to_geometry
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
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    return cv2.morphologyEx(rgb[..., 1].astype(np.float32), cv2.MORPH_BLACKHAT, k)


def visible_vessels(vmap: np.ndarray, depth: np.ndarray, reference_depth: float) -> np.ndarray:
    """Vessel probability weighted by how visible the vessel is: full from VISIBLE_K × the clean
    photos' median vessel depth, fading linearly to 0 at no contrast."""
    return (vmap * np.clip(depth / (VISIBLE_K * reference_depth), 0, 1)).astype(np.float32)


def visible_at_scales(prob: np.ndarray, rgb: np.ndarray, references: list[float]) -> list[np.ndarray]:
    """The visible-vessel map (MAP_SIZE²) weighted by the contrast at each DEPTH_KERNELS scale."""
    return [to_map(visible_vessels(prob, vessel_depth(rgb, k), ref)) for k, ref in zip(DEPTH_KERNELS, references)]


def disagreement(expected: np.ndarray, traced: np.ndarray, rgb: np.ndarray, fov: np.ndarray,
                 references: list[float], floor: float = EXPECTED_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(anomaly, visible map), both MAP_SIZE²: the traced vessels (photo resolution) weighted by
    their contrast at each scale, compared with ``expected``; the larger anomaly of the scales is
    kept, and the visible map is what shows at every scale."""
    seen_at = visible_at_scales(traced, rgb, references)
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


def train(data: str | None = None, vessels_path: str | Path = "models/teacher/vessels.pt", steps: int = 1500,
          batch: int = 6, seed: int = 0, out: str | Path = "models/teacher/inpainter.pt",
          progress: bool = True, device: str = "cpu") -> dict:
    """Vessel maps of TEACHER_TRAIN photos → inpainter weights at ``out``; returns training metrics."""
    from tqdm import tqdm

    root = data_root(data)
    extractor = vessel_stage.load_model(vessels_path)
    maps = [vessel_map(extractor, load_photo(n, vessel_stage.SIZE, root)) for n in
            tqdm(TEACHER_TRAIN, desc="vessel maps", disable=not progress)]
    t0 = time.time()
    model, loss = fit(maps, steps=steps, batch=batch, seed=seed, progress=progress, device=device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return {"hole_recovery": hole_recovery(model, maps), "train_images": TEACHER_TRAIN, "steps": steps, "batch": batch, "seed": seed, "map_size": MAP_SIZE,
            "base": BASE, "levels": LEVELS, "final_mse": loss, "device": device, "fills": list(FILLS),
            "apply_p": APPLY_P, "blob_p": BLOB_P,
            "params": sum(p.numel() for p in model.parameters()), "train_seconds": round(time.time() - t0, 1)}


def fit(maps: list[tuple[np.ndarray, np.ndarray]], steps: int, batch: int = 6, seed: int = 0,
        progress: bool = True, base: int = BASE, fills: tuple[str, ...] = FILLS, device: str = "cpu",
        lr: float = 1e-3, blob_p: float = BLOB_P) -> tuple[ResidualInpainter, float]:
    """Masked-inpainting training on (vessel map, FOV) pairs; MSE inside the FOV. Returns (model, last loss).

    Each sample is masked with probability APPLY_P (grid N∈[4, 32], ratio schedule), its hidden
    cells filled by one of ``fills``; the target is always the intact map."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = build_model(base).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="teacher", disable=not progress, mininterval=2)
    loss_value = float("nan")
    for step in bar:
        xs, ins, fs = [], [], []
        for i in rng.integers(len(maps), size=batch):
            v, f = _augment(*maps[i], rng)
            xs.append(v)
            if rng.random() < APPLY_P:
                keep = blob_mask(MAP_SIZE, rng) if rng.random() < blob_p else random_grid_mask(MAP_SIZE, rng, step / steps)
                v = fill(v, keep, rng, fills) * f
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


CONFIG = "teacher.json"
#: median vessel depth (grey levels) of clean photos until ``calibrate`` measures it
DEFAULT_DEPTH = 10.0


class Teacher:
    """Photo → what should be there (anatomy) vs what is visible → their disagreement → patch scores.

    Two vessel extractors share DRIVE's labels: the *visible* one (mild augmentation) loses vessels
    where a photo is degraded, further weighted by the vessels' measured contrast; the *anatomy*
    one (trained through label-free perturbations) keeps finding the vessels that are there, and
    the masked-inpainting prior reconstructs that map (closing its gaps). The anomaly is their
    relative disagreement (:func:`vessel_anomaly`), mostly the share of the expected vasculature
    the photo does not show.

    ``config`` holds what was calibrated on clean training photos: ``vessel_depth`` (their median
    vessel contrast, one per DEPTH_KERNELS scale), ``tau`` (pixel anomaly threshold), ``phi`` (fraction of anomalous pixels that
    flags a patch) and ``mean_threshold`` (the same false-positive budget for the mean score).
    """

    def __init__(self, vessels: str | Path | UNet, anatomy: str | Path | UNet,
                 inpainter: str | Path | ResidualInpainter, config: dict | None = None) -> None:
        load = lambda m: m.eval() if isinstance(m, UNet) else vessel_stage.load_model(m)  # noqa: E731
        self.extractor, self.anatomy = load(vessels), load(anatomy)
        self.inpainter = inpainter.eval() if isinstance(inpainter, ResidualInpainter) else load_model(inpainter)
        self.config = {"tau": 0.02, "phi": 0.9, "mean_threshold": float("inf"),
                       "vessel_depth": [DEFAULT_DEPTH] * len(DEPTH_KERNELS), **(config or {})}
        if len(np.atleast_1d(self.config["vessel_depth"])) != len(DEPTH_KERNELS):
            raise ValueError(f"teacher.json holds {self.config['vessel_depth']!r} as vessel_depth: one reference "
                             f"per depth scale {DEPTH_KERNELS} is needed (recalibrate: efiqa train teacher --calibrate-only)")
        self.tau = float(self.config["tau"])

    @torch.no_grad()
    def __call__(self, bgr: np.ndarray, name: str = "") -> TeacherOutput:
        photo = to_geometry(bgr, vessel_stage.SIZE, name)
        anatomy, fov = vessel_stage.predict(self.anatomy, photo), map_fov(photo)
        expected = reconstruct(self.inpainter, to_map(anatomy))
        # a vessel counts as visible only as far as anatomy puts one there: a slight blur makes the
        # visible extractor *more* confident of thin vessels, which would hide the contrast it takes
        traced = np.minimum(vessel_stage.predict(self.extractor, photo), anatomy)
        anomaly, seen = disagreement(expected, traced, photo.rgb, fov, self.config["vessel_depth"])
        score, frac, cov = pool_cells(anomaly, fov, GRID, self.tau)
        density = pool_cells(seen, fov, GRID, 0.0)[0]
        return TeacherOutput(seen, expected, anomaly, fov, score, frac, density, cov, photo.crop, photo.fov)

    @classmethod
    def load(cls, folder: str | Path) -> "Teacher":
        folder = Path(folder)
        config = json.loads((folder / CONFIG).read_text()) if (folder / CONFIG).is_file() else None
        return cls(folder / "vessels.pt", folder / "anatomy.pt", folder / "inpainter.pt", config)


def reference_depth(teacher: "Teacher", photos: list[tuple[str, np.ndarray]]) -> list[float]:
    """Median vessel depth (grey levels) at confidently traced vessels of clean photos, per scale."""
    depths: list[list[np.ndarray]] = [[] for _ in DEPTH_KERNELS]
    for name, bgr in photos:
        photo = to_geometry(bgr, vessel_stage.SIZE, name)
        traced = (vessel_stage.predict(teacher.extractor, photo) > 0.5) & photo.fov_mask
        for acc, k in zip(depths, DEPTH_KERNELS):
            acc.append(vessel_depth(photo.rgb, k)[traced])
    return [float(np.median(np.concatenate(d))) if sum(map(len, d)) else DEFAULT_DEPTH for d in depths]


def calibrate(teacher: "Teacher", photos: list[tuple[str, np.ndarray]], fp_budget: float = 0.05,
              tau: float = 0.02) -> dict:
    """Label-free decision rule from clean (name, BGR photo) pairs only: flag at most ``fp_budget`` of their patches.

    Recipe: pixel anomaly > 0.02 in ≥ 90 % of a patch. On our maps that flags about half of all clean
    patches, so tau and phi are re-derived from clean photos: tau = 90th percentile of clean pixel
    anomalies, phi = (1 − budget) quantile of clean patch fractions.
    """
    teacher.config["vessel_depth"] = reference_depth(teacher, photos)
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
    return {"vessel_depth": teacher.config["vessel_depth"], "tau": tau_clean, "phi": phi,
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
    """After training: calibrate the decision rule and fit the classical baseline on the clean
    training photos; writes teacher.json and baseline.json into ``folder``."""
    from efiqa.imageio import read_image

    from .baseline import ClassicalBaseline
    from .data import resolve, to_geometry

    root = data_root(data)
    originals = [(n, read_image(resolve(n, root))) for n in TEACHER_TRAIN]
    model = Teacher(folder / "vessels.pt", folder / "anatomy.pt", folder / "inpainter.pt")
    config = calibrate(model, originals)
    write_json(config, folder / CONFIG)
    ClassicalBaseline.fit([to_geometry(bgr, 512, n) for n, bgr in originals]).save(folder / "baseline.json")
    return config
