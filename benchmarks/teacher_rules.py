"""Teacher visibility rules judged by the *student* they teach, against ground truth.

The teacher's networks (anatomy and visible extractors, inpainting prior) run once per training
perturbation; their outputs (``Teacher.parts``) are kept on disk beside the label cache. Each rule
below re-judges those same parts (``Teacher.judge`` with a module constant or function swapped),
which gives a new set of labels in minutes instead of a 47-minute relabel. A student head is then
distilled from each rule's labels as ``efiqa train student`` would (same features, same recipe),
from three seeds, on four training-pool photos in five; the fifth (every fifth photo, as in
``adapter_ground_truth.py``) is degraded by the ``synth`` evaluation generator (never ``soft``, never
the HELD_OUT photos of ``accuracy.py``) and the heads' maps are scored against its masks.

The question: does another visibility rule give a better *student*? Rules: the exposure term
(none below the photo's median, as v3.5; a higher under-exposure ramp; each pixel against its ring
of the FOV instead of the whole photo), where visibility saturates (VISIBLE_K), how sharp the
compared densities are (σ), visibility from measured contrast alone (the anatomy map in place
of the visible extractor's) or from halfway between the two maps, each with the vessel depth
measured on the photo or on its 3×3 median (noise); and a noise term that needs no extractor (the
local residual after a 3×3 median against the clean pool's, :func:`noise_visibility`) beside the
shipped rule, contrast alone and the halfway rule; and each perturbation judged against its own
unperturbed photo's vessel depth and contrast (``source_references``), or against its camera
group's (CAMERA), instead of the pool's; tau calibrated per rule (TAU: on the pool as it is, or
each camera weighed alike); the optic disc (:func:`find_disc`) exempt from the washed-out ramp
(DISC); and exposure judged against the clean pool's level at the same eccentricity
(:func:`vignetting_exposure`), with the under-exposure ramp then starting higher, and the disc's
vessels judged by depth alone (:func:`disc_depth_only`). Tau does not enter the student's target (the cells' mean anomaly), so
a TAU rule's heads are its base rule's exactly: it changes only the teacher's own flags and its
camera-left-out rate. Beside the heads' scores, every rule's teacher-level clean false-positive
rate with each camera group left out of its calibration (:func:`clean_fpr`) and the heads' clean
false-positive rate on the validation photos per camera (:func:`student_clean_fpr`), which the
ship rule bounds, and the heads' overall AUROC on the validation photos of cameras other than
IDRiD (10 of the 17 are IDRiD's; the held-out check sees none). The three seeds of the shipped rule give the
yardstick (their spread); the rule to ship a candidate is fixed in SHIP_RULE, the held-out check
it must then pass in HELD_OUT_RULE.

    python benchmarks/teacher_rules.py [--data DIR] [--rules NAME ...]

The first run labels the pool with the shipped teacher (about 47 minutes on two cores) and leaves
the standard label cache behind, which ``efiqa train student`` then reuses; the parts take about
3.4 MB per perturbation on disk (about 7 GB for the 85-photo pool × 24) under ``--cache``.
Writes benchmarks/results/teacher_rules.json / .md. Nothing here changes what ships.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import pickle
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from efiqa.train import distill  # noqa: E402
from efiqa.train import teacher as T  # noqa: E402
from efiqa.train.teacher import Teacher, TeacherParts  # noqa: E402


class PartsStore:
    """The teacher's parts of every labelled perturbation, one pickle per source photo."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.current: int | None = None
        self.items: list[tuple[int, TeacherParts]] = []

    def add(self, photo: int, perturbation: int, parts: TeacherParts) -> None:
        if self.current is not None and photo != self.current:
            self.flush()
        self.current = photo
        self.items.append((perturbation, parts))

    def flush(self) -> None:
        if self.current is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"photo_{self.current:03d}.pkl").write_bytes(pickle.dumps(self.items, pickle.HIGHEST_PROTOCOL))
        self.items = []

    def close(self) -> None:
        self.flush()
        (self.folder / "complete").write_text("")

    def complete(self) -> bool:
        return (self.folder / "complete").exists()

    def __iter__(self) -> Iterator[tuple[int, int, TeacherParts]]:
        for path in sorted(self.folder.glob("photo_*.pkl")):
            photo = int(path.stem.split("_")[1])
            for k, parts in pickle.loads(path.read_bytes()):
                yield photo, k, parts


def pool(args: argparse.Namespace) -> tuple[list[str], list[np.ndarray], Teacher, PartsStore, Path]:
    """The pool's names and photos, the shipped teacher, its parts (computed on the first run) and the
    standard label cache path."""
    import torch

    torch.set_num_threads(2)
    teacher = Teacher.load(args.teacher)
    named = distill.photo_list(None, args.data)
    names, photos = [n for n, _ in named], [p for _, p in named]
    key = distill.label_cache_key(names, args.teacher, args.augmentations, 0)
    store = PartsStore(args.cache / f"parts_{key}")
    labels_path = args.cache / f"labels_{key}.pkl"
    if not store.complete():
        labels = distill.teacher_labels(photos, teacher, args.augmentations, 0, keep=store.add)
        store.close()
        distill._store(labels_path, labels)
    return names, photos, teacher, store, labels_path


RINGS = 10


def radial_visibility(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """``T.brightness_visibility`` with each pixel's level taken against the median green of its
    ring of the FOV (RINGS rings by radius; centre and radius from the mask's centroid and area),
    interpolated by radius, instead of the whole photo's median."""
    import cv2

    green = rgb[..., 1].astype(np.float32)
    if not fov_mask.any():
        return SHIPPED_VISIBILITY(rgb, fov_mask)
    ys, xs = np.nonzero(fov_mask)
    cy, cx, r = ys.mean(), xs.mean(), max(np.sqrt(len(ys) / np.pi), 1.0)
    yy, xx = np.indices(green.shape)
    rho = np.clip(np.hypot(yy - cy, xx - cx) / r, 0, 1)
    ring = np.minimum((rho * RINGS).astype(int), RINGS - 1)
    overall = float(np.median(green[fov_mask]))
    medians = np.array([np.median(green[fov_mask & (ring == k)]) if (fov_mask & (ring == k)).any() else overall
                        for k in range(RINGS)], np.float32)
    reference = np.interp(rho, (np.arange(RINGS) + 0.5) / RINGS, medians) + 1.0
    return T.exposure_visibility(cv2.GaussianBlur(green, (0, 0), 4) / reference)


SHIPPED_VISIBILITY = T.brightness_visibility
SHIPPED_DEPTH = T._depth_and_background
#: a rule's key for a change to the parts themselves (not a module name)
PARTS = "parts"


def contrast_only(parts: TeacherParts) -> TeacherParts:
    """The anatomy map in place of the visible extractor's: visibility from measured contrast alone."""
    return dataclasses.replace(parts, traced=parts.anatomy)


def half_traced(parts: TeacherParts) -> TeacherParts:
    """Halfway between the visible extractor's map and the anatomy map: the extractor's losses count half."""
    return dataclasses.replace(parts, traced=0.5 * (parts.traced + parts.anatomy))


def three_quarter_traced(parts: TeacherParts) -> TeacherParts:
    """Three quarters the visible extractor's map, a quarter the anatomy map: its losses count 3/4."""
    return dataclasses.replace(parts, traced=0.75 * parts.traced + 0.25 * parts.anatomy)


def denoised_depth(rgb: np.ndarray, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """Vessel depth and background as the shipped rule measures them, on a 3×3 median of the photo:
    sensor noise no longer reads as vessel contrast (the black-hat sees every dark speck)."""
    import cv2

    return SHIPPED_DEPTH(cv2.medianBlur(np.ascontiguousarray(rgb), 3), kernel)


#: residual level (mean |green − its 3×3 median|, grey levels) of the clean pool photos' FOV: set by main
NOISE_REFERENCE: list[float] = []
NOISE_SIGMA = 8.0  # px (of the 512-px photo): the neighbourhood over which the residual level is averaged


def fov_blur(a: np.ndarray, fov_mask: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian mean (σ ``sigma`` px) of ``a`` over in-FOV pixels only: the black outside the FOV
    does not pull the rim toward zero."""
    import cv2

    inside = fov_mask.astype(np.float32)
    return cv2.GaussianBlur(a * inside, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(inside, (0, 0), sigma), 1e-3)


def noise_level(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """Local sensor-noise level: mean |green − its 3×3 median| over a Gaussian neighbourhood (σ
    NOISE_SIGMA px) of in-FOV pixels. Blur and compression lower it, speckle raises it; vessel edges
    add a little, the same in clean and noisy photos. Measured on the photo, not through any extractor."""
    import cv2

    green = np.ascontiguousarray(rgb[..., 1])
    residual = np.abs(green.astype(np.float32) - cv2.medianBlur(green, 3).astype(np.float32))
    return fov_blur(residual, fov_mask, NOISE_SIGMA)


#: px (of the 512-px photo): the Gaussian that smooths the photo before :func:`vessel_scale` measures it
SCALE_SIGMA = 2.0
SCALE_KERNEL = 17  # px: the closing element of :func:`vessel_scale` (the larger DEPTH_KERNELS scale)


def vessel_scale(rgb: np.ndarray, fov_mask: np.ndarray) -> float:
    """The photo's own contrast scale: the 90th percentile over the FOV of the vessel depth (black-hat,
    SCALE_KERNEL px) of the photo smoothed by a σ SCALE_SIGMA px Gaussian, which averages sensor noise
    away but keeps the vessels. A contrast enhancement (CLAHE, an unsharp mask) raises it with the
    fine residual; speckle barely moves it."""
    import cv2

    if not fov_mask.any():
        return 1.0
    depth, _ = SHIPPED_DEPTH(cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), SCALE_SIGMA), SCALE_KERNEL)
    return max(float(np.quantile(depth[fov_mask], 0.9)), 1e-3)


def relative_noise_level(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """:func:`noise_level` over the photo's :func:`vessel_scale`: noise relative to the contrast the
    photo shows. CLAHE and unsharp masks amplify the fine residual 2-4x (what v3.7c's noise term read
    as noise, 37 of 42 CLAHE'd DRIMDB-dev Good photos then ungradable) and the vessels as much."""
    return noise_level(rgb, fov_mask) / vessel_scale(rgb, fov_mask)


#: :func:`relative_noise_level`'s median over the clean pool photos' FOV pixels: set by main
RELATIVE_NOISE_REFERENCE: list[float] = []


def joint_noise_level(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """The smaller of :func:`noise_level` over NOISE_REFERENCE and :func:`relative_noise_level` over
    RELATIVE_NOISE_REFERENCE (judge it against 1): a region reads as noisy only where both the residual
    and the residual relative to the photo's contrast are high. An enhanced photo raises the first
    alone; a camera whose clean photos show little contrast (DRIMDB-dev's: the relative level at
    1.16x the pool's, up to 2.3x: noise_measures.json) raises the second alone; speckle raises both."""
    residual = noise_level(rgb, fov_mask)  # once: relative_noise_level would measure it again
    return np.minimum(residual / NOISE_REFERENCE[0], residual / vessel_scale(rgb, fov_mask) / RELATIVE_NOISE_REFERENCE[0])


def noise_visibility(rgb: np.ndarray, fov_mask: np.ndarray, ramp: tuple[float, float],
                     reference: list[float] = NOISE_REFERENCE,
                     exposure: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                     level: Callable[[np.ndarray, np.ndarray], np.ndarray] = noise_level) -> np.ndarray:
    """The shipped exposure term (or ``exposure``) times a noise term: vessels fully visible up to
    ramp[0] × the clean pool's residual level (NOISE_REFERENCE), not at all from ramp[1] ×, linear
    between. The visible extractor, which loses vessels under speckle, is the shipped teacher's only
    noise guard; this term guards without it, so that rules which drop the extractor's trace keep one.
    ``level``: another measure of the residual (:func:`relative_noise_level`, with its reference)."""
    lo, hi = ramp
    level = level(rgb, fov_mask) / reference[0]
    return (exposure or SHIPPED_VISIBILITY)(rgb, fov_mask) * np.clip((hi - level) / (hi - lo), 0, 1)


#: the optic disc of the photo being judged (a bool mask at its resolution), set by ``judge_all``
#: for DISC rules (:func:`find_disc`)
CURRENT_DISC: list[np.ndarray] = []
#: a rule's key: the optic disc is exempt from the washed-out half of the exposure term
DISC = "disc"
DISC_RADIUS = 0.2  # × the FOV radius: the exempt disc (an optic disc is about 0.15-0.2 R across half)


def find_disc(parts: TeacherParts) -> np.ndarray:
    """Where the optic disc is, label-free: the maximum, inside the FOV less its outer 0.05 R, of the
    product of the anatomy map's vessel density and the green level (both averaged over σ 0.1 R of
    FOV pixels, each over its maximum): where the large vessels converge on a bright spot. The
    anatomy map keeps its vessels under the training perturbations, so a flare alone, bright but
    without converging vessels, is seldom taken for the disc. A disc of DISC_RADIUS × R around it."""
    import cv2

    photo = parts.photo
    fov = photo.fov_mask
    r = max(float(np.sqrt(fov.sum() / np.pi)), 1.0)
    density = fov_blur(parts.anatomy.astype(np.float32), fov, 0.1 * r)
    green = fov_blur(photo.rgb[..., 1].astype(np.float32), fov, 0.1 * r)
    inner = cv2.erode(fov.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.1 * r) | 1,) * 2)) > 0
    if not inner.any():
        return np.zeros_like(fov)
    score = np.where(inner, density / max(float(density[inner].max()), 1e-6) * green / max(float(green[inner].max()), 1e-6), -1)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    yy, xx = np.indices(fov.shape)
    return (np.hypot(yy - y, xx - x) < DISC_RADIUS * r) & fov


def disc_exempt(rgb: np.ndarray, fov_mask: np.ndarray,
                exposure: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The shipped exposure term (or ``exposure``), without its washed-out ramp on the optic disc
    (CURRENT_DISC): the disc is bright by anatomy, and the ramp made every clean photo's disc read
    as washed out."""
    exposure = exposure or SHIPPED_VISIBILITY
    vis = exposure(rgb, fov_mask)
    if not CURRENT_DISC or CURRENT_DISC[0].shape != vis.shape:
        return vis
    saved = T.WASHED_OUT
    try:
        T.WASHED_OUT = (1e9, 2e9)
        dark_only = exposure(rgb, fov_mask)
    finally:
        T.WASHED_OUT = saved
    return np.where(CURRENT_DISC[0], dark_only, vis)


SHIPPED_VESSEL_VISIBILITY = T.visibility


def disc_depth_only(rgb: np.ndarray, kernel: int, depth_ref: float, contrast_ref: float | None = None) -> np.ndarray:
    """``T.visibility`` with the optic disc (CURRENT_DISC) judged by vessel depth alone: the disc's
    bright background lowers its vessels' Weber contrast on every clean photo (under contrast alone,
    IDRiD's disc cells 0.375 against 0.188 elsewhere), as its brightness fed the washed-out ramp."""
    vis = SHIPPED_VESSEL_VISIBILITY(rgb, kernel, depth_ref, contrast_ref)
    if contrast_ref is None or not CURRENT_DISC or CURRENT_DISC[0].shape != vis.shape:
        return vis
    return np.where(CURRENT_DISC[0], SHIPPED_VESSEL_VISIBILITY(rgb, kernel, depth_ref), vis)


def rho_map(fov_mask: np.ndarray) -> np.ndarray:
    """Each pixel's distance from the FOV's centroid over its radius (from its area)."""
    ys, xs = np.nonzero(fov_mask)
    if not len(ys):
        return np.zeros(fov_mask.shape, np.float32)
    r = max(float(np.sqrt(len(ys) / np.pi)), 1.0)
    yy, xx = np.indices(fov_mask.shape)
    return (np.hypot(yy - ys.mean(), xx - xs.mean()) / r).astype(np.float32)


def fov_level(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """Local green level (σ 4 px, as the shipped term smooths it) over the photo's in-FOV median,
    averaged over FOV pixels only: the black outside no longer darkens the rim."""
    green = rgb[..., 1].astype(np.float32)
    median = float(np.median(green[fov_mask])) + 1.0 if fov_mask.any() else 1.0
    return fov_blur(green, fov_mask, 4) / median


VIGNETTING_RINGS = 10
#: each ring's centre in ρ: where its profile value sits when profiles are interpolated
RING_CENTRES = (np.arange(VIGNETTING_RINGS) + 0.5) / VIGNETTING_RINGS
#: the clean pool's median :func:`fov_level` in each of VIGNETTING_RINGS rings of ρ (set by main)
VIGNETTING: list[float] = []


def ring_of(rho: np.ndarray) -> np.ndarray:
    """The ring (0 … VIGNETTING_RINGS − 1) of each ρ; the last ring takes what lies beyond ρ 1."""
    return np.minimum((rho * VIGNETTING_RINGS).astype(int), VIGNETTING_RINGS - 1)


def vignetting_profile(clean: list[TeacherParts]) -> list[float]:
    """The median, over the pool's photos as they are, of each photo's median :func:`fov_level` per ring
    of ρ (0-1 in VIGNETTING_RINGS rings, the last taking what lies beyond): how much darker a clean
    field is toward its rim."""
    per_photo = []
    for parts in clean:
        fov = parts.photo.fov_mask
        level, ring = fov_level(parts.photo.rgb, fov), ring_of(rho_map(fov))
        per_photo.append([float(np.median(level[fov & (ring == b)])) if (fov & (ring == b)).any() else np.nan
                          for b in range(VIGNETTING_RINGS)])
    return np.nanmedian(np.array(per_photo), axis=0).tolist()


#: the profile :func:`vignetting_exposure` judges against, set by ``judge_all`` for each rule: the
#: pool's (VIGNETTING), or for a CAMERA_VIGNETTING rule the photo's camera group's
ACTIVE_VIGNETTING: list[float] = []
#: a rule's key: :func:`vignetting_exposure` against the photo's camera group's profile
CAMERA_VIGNETTING = "camera vignetting"


def vignetting_exposure(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """The shipped exposure ramps applied to :func:`fov_level` over the clean level at the pixel's
    eccentricity (ACTIVE_VIGNETTING: the pool's or the camera's): a field that darkens toward its
    rim as clean fields do is not under-exposed there."""
    if not fov_mask.any() or not ACTIVE_VIGNETTING:
        return SHIPPED_VISIBILITY(rgb, fov_mask)
    expected = np.interp(rho_map(fov_mask), RING_CENTRES, ACTIVE_VIGNETTING)
    return T.exposure_visibility(fov_level(rgb, fov_mask) / np.maximum(expected, 1e-3))


#: a rule's key: vessels judged against the clean depth and contrast at their eccentricity
#: (:func:`profiled_visibility`): POOL, the pool's profile (VESSEL_PROFILE), or CAMERA, the photo's
#: camera group's
VESSEL_PROFILE_KEY = "vessel profile"
POOL = "pool"
#: per DEPTH_KERNELS scale, (depth, contrast) factors per ring of ρ (set by main: the pool's)
VESSEL_PROFILE: list = []
#: the profile :func:`profiled_visibility` judges against, and the :func:`rho_map` of the photo being
#: judged (set by ``judge_all``)
ACTIVE_VESSEL_PROFILE: list = []
CURRENT_RHO: list[np.ndarray] = []


def vessel_profile(clean: list[TeacherParts]) -> list[list[list[float]]]:
    """How much fainter clean vessels are toward the rim: for each DEPTH_KERNELS scale, the median
    vessel depth and Weber contrast (at the pixels :func:`references` measures) in each of
    VIGNETTING_RINGS rings of ρ over their median in the whole field, pooled over ``clean``'s
    pixels; capped at 1 (the centre is not judged stricter), floored at 0.1 (no profile of the pool
    or its cameras comes near: their lowest factor is 0.5), and 1 in a ring with under 100 vessel
    pixels (EyePACS's innermost: 50). Peripheral vessels are thinner and the
    rim darker: on HRF's clean photos their depth halves past ρ 0.85, which the pool-wide reference
    read as vasculature lost."""
    out = []
    for kernel in T.DEPTH_KERNELS:
        measured = [vessel_pixels(parts, kernel) for parts in clean]
        d, c = (np.concatenate([m[j] for m in measured]) for j in (0, 1))
        ring = np.concatenate([ring_of(rho_map(parts.photo.fov_mask)[vessels])
                               for parts, (_, _, vessels) in zip(clean, measured)])
        factors = []
        for values in (d, c):
            whole = max(float(np.median(values)), 1e-6)
            factors.append([float(np.clip(float(np.median(values[ring == b])) / whole, 0.1, 1.0)) if (ring == b).sum() >= 100
                            else 1.0 for b in range(VIGNETTING_RINGS)])
        out.append(factors)
    return out


def profiled_visibility(rgb: np.ndarray, kernel: int, depth_ref: float, contrast_ref: float | None = None) -> np.ndarray:
    """``T.visibility`` with its references scaled, pixel by pixel, by ACTIVE_VESSEL_PROFILE at the
    pixel's eccentricity (:func:`vessel_profile`): a vessel as faint as clean ones are at that place
    in the field is fully visible."""
    if not ACTIVE_VESSEL_PROFILE or not CURRENT_RHO or CURRENT_RHO[0].shape != rgb.shape[:2]:
        return SHIPPED_VESSEL_VISIBILITY(rgb, kernel, depth_ref, contrast_ref)
    depth_f, contrast_f = ACTIVE_VESSEL_PROFILE[T.DEPTH_KERNELS.index(kernel)]
    rho = CURRENT_RHO[0]
    # T.visibility's body with per-pixel references, its products in the order the study's results were
    # judged in (passing the scaled references to T.visibility rounds differently, by 1e-7)
    depth, background = T._depth_and_background(rgb, kernel)
    vis = np.clip(depth / (T.VISIBLE_K * depth_ref * np.interp(rho, RING_CENTRES, depth_f)), 0, 1)
    if contrast_ref is not None:
        vis = np.minimum(vis, np.clip(T.weber(depth, background)
                                      / (T.VISIBLE_K * contrast_ref * np.interp(rho, RING_CENTRES, contrast_f)), 0, 1))
    return vis


#: the vignetting-aware exposure term with the disc exempt from its washed-out ramp
DISC_VIGNETTING = functools.partial(disc_exempt, exposure=vignetting_exposure)


def noise_reference(names: list[str], photos: list[np.ndarray],
                    level: Callable[[np.ndarray, np.ndarray], np.ndarray] = noise_level) -> float:
    """The median residual level (or ``level``) over the FOV pixels of the pool's photos as they are
    (the teacher's calibration set), in the teachers' 512-px geometry."""
    from efiqa.train import vessels
    from efiqa.train.data import to_geometry

    levels = []
    for name, bgr in zip(names, photos):
        photo = to_geometry(bgr, vessels.SIZE, name)
        levels.append(level(photo.rgb, photo.fov_mask)[photo.fov_mask])
    return float(np.median(np.concatenate(levels)))


#: noise_term's ``relative`` value for :func:`joint_noise_level`
JOINT = "joint"


def noise_term(ramp: tuple[float, float], reference: list[float] = NOISE_REFERENCE,
               exposure: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
               relative: bool | str = False) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """:func:`noise_visibility` with these settings; ``relative``: the residual over the photo's
    contrast scale (:func:`relative_noise_level`) against its pool reference; JOINT: the smaller of
    both levels over their references (:func:`joint_noise_level`)."""
    extra = {"exposure": exposure} if exposure else {}
    if relative == JOINT:
        extra.update(level=joint_noise_level, reference=[1.0])
    elif relative:
        extra.update(level=relative_noise_level, reference=RELATIVE_NOISE_REFERENCE)
    return functools.partial(noise_visibility, ramp=ramp, **{"reference": reference, **extra})


#: the references of the photo being judged, measured on its unperturbed version (see ``source_references``)
SOURCE_NOISE: list[float] = [1.0]
#: a rule's key: judge against the source photo's own references ("contrast": vessel depth and Weber
#: contrast; the noise term's reference comes from SOURCE_NOISE when the rule uses ``source_noise_term``)
SOURCE = "source"


def source_references(parts: TeacherParts) -> dict:
    """The references of one unperturbed photo: median vessel depth and Weber contrast at its
    confidently traced vessels (the visible extractor's map capped by anatomy > 0.5; calibration
    takes the uncapped map), per scale, and its median noise level; {} (the pool's then hold) where
    fewer than 100 pixels are traced or the unperturbed photo was refused. A perturbation of it is
    then judged against what *its own* clean version shows, not against the pool's median photo: a
    camera whose clean photos have fainter vessels (or more noise) than the pool's no longer reads
    as degraded throughout."""
    return references([parts])


def vessel_pixels(parts: TeacherParts, kernel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel depth and Weber contrast (one DEPTH_KERNELS scale) at a photo's confidently traced
    vessels (the visible extractor's map capped by anatomy > 0.5, inside the FOV), and that mask:
    what :func:`references` and :func:`vessel_profile` measure."""
    vessels = (parts.traced > 0.5) & parts.photo.fov_mask
    d, background = SHIPPED_DEPTH(parts.photo.rgb, kernel)
    return d[vessels], T.weber(d, background)[vessels], vessels


def references(group: list[TeacherParts]) -> dict:
    """:func:`source_references` pooled over the pixels of several unperturbed photos (a camera's)."""
    depth: list[list[np.ndarray]] = [[] for _ in T.DEPTH_KERNELS]
    contrast: list[list[np.ndarray]] = [[] for _ in T.DEPTH_KERNELS]
    noise = []
    for parts in group:
        photo = parts.photo
        for d_acc, c_acc, kernel in zip(depth, contrast, T.DEPTH_KERNELS):
            d, c, _ = vessel_pixels(parts, kernel)
            d_acc.append(d)
            c_acc.append(c)
        noise.append(noise_level(photo.rgb, photo.fov_mask)[photo.fov_mask])
    if sum(v.size for v in depth[0]) < 100:
        return {}
    median = lambda parts: float(np.median(np.concatenate(parts)))  # noqa: E731
    return {"vessel_depth": [median(d) for d in depth], "vessel_contrast": [median(c) for c in contrast],
            "noise": max(median(noise), 1e-3)}


#: SOURCE's value for judging against the references of the photo's camera group (:func:`camera`:
#: :func:`references` over the group's unperturbed photos) instead of its own: a camera's clean
#: look is no longer a defect, while a photo poorer than its camera's others still reads as poorer
#: (judged against itself, a whole-photo loss taught nothing: v3.7b's DRIMDB-dev drop)
CAMERA = "camera"


#: a rule's key: judge with a tau calibrated on the rule's own anomalies of the pool's photos as they
#: are (their 90th percentile: the tau ``efiqa train teacher --calibrate-only`` would derive; phi and
#: the references stay the shipped teacher's): OWN weighs every pixel alike (54 of the 85 photos are
#: IDRiD's), BALANCED weighs each camera group alike (:func:`camera`). Without it, the shipped
#: teacher's tau. Tau does not enter the student's target (the cells' mean anomaly): an OWN rule's
#: row equals its base rule's, and a BALANCED rule changes only its camera-left-out rate.
TAU = "tau"
OWN, BALANCED = "own", "balanced"


def clean_tau(items: list[tuple[str, T.TeacherOutput]], balanced: bool) -> float:
    """``teacher.calibrate``'s tau (the 90th percentile of clean in-FOV pixel anomalies, floor 1e-3) of
    (camera group, output) pairs; ``balanced``: each group's pixels weigh 1 / that group's pixel count."""
    pixels = [o.anomaly[o.fov] for _, o in items]
    if not balanced:
        return max(float(np.quantile(np.concatenate(pixels), 0.9)), 1e-3)
    count: dict[str, int] = {}
    for (g, _), px in zip(items, pixels):
        count[g] = count.get(g, 0) + px.size
    weights = np.concatenate([np.full(px.size, 1.0 / count[g]) for (g, _), px in zip(items, pixels)])
    # weighted quantiles need numpy >= 2.0 (the package itself asks only for 1.24)
    return max(float(np.quantile(np.concatenate(pixels), 0.9, weights=weights, method="inverted_cdf")), 1e-3)


def source_noise_term(ramp: tuple[float, float]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """:func:`noise_term` against the source photo's own noise level."""
    return noise_term(ramp, SOURCE_NOISE)


#: rule name → the teacher module's names to swap while judging (the shipped rule swaps nothing)
SHIPPED = "shipped (v3.6)"
RULES: dict[str, dict] = {
    SHIPPED: {},
    "no under-exposure term (v3.5)": {"UNDEREXPOSED": None},
    "under-exposure 0.4-0.85": {"UNDEREXPOSED": (0.4, 0.85)},
    "radial exposure reference": {"brightness_visibility": radial_visibility},
    "VISIBLE_K 0.8": {"VISIBLE_K": 0.8},
    "VISIBLE_K 1.0": {"VISIBLE_K": 1.0},
    "density sigma 6 px": {"vessel_anomaly": functools.partial(T.vessel_anomaly, sigma=6.0)},
    "contrast alone (traced = anatomy)": {PARTS: contrast_only},
    "half traced, half anatomy": {PARTS: half_traced},
    "contrast alone, denoised depth": {PARTS: contrast_only, "_depth_and_background": denoised_depth},
    "half traced, denoised depth": {PARTS: half_traced, "_depth_and_background": denoised_depth},
    # added 2026-11-30 with the kind clause of SHIP_RULE, before any of their results: a noise guard
    # that does not go through the visible extractor
    "shipped + noise term 2-4x": {"brightness_visibility": noise_term((2.0, 4.0))},
    "contrast alone + noise term 2-4x": {PARTS: contrast_only, "brightness_visibility": noise_term((2.0, 4.0))},
    "contrast alone + noise term 1.5-3x": {PARTS: contrast_only, "brightness_visibility": noise_term((1.5, 3.0))},
    "half traced + noise term 2-4x": {PARTS: half_traced, "brightness_visibility": noise_term((2.0, 4.0))},
    # added 2026-11-30 with the clean-FPR clause of SHIP_RULE, before any of their results: each
    # perturbation judged against its own unperturbed photo's references, not the pool's
    "shipped, source references": {SOURCE: True},
    "contrast alone + noise term 2-4x, source references": {PARTS: contrast_only, SOURCE: True,
                                                             "brightness_visibility": noise_term((2.0, 4.0))},
    "contrast alone + noise term 2-4x, source references and noise": {PARTS: contrast_only, SOURCE: True,
                                                                       "brightness_visibility": source_noise_term((2.0, 4.0))},
    "half traced + noise term 2-4x, source references": {PARTS: half_traced, SOURCE: True,
                                                          "brightness_visibility": noise_term((2.0, 4.0))},
    # added 2026-11-30 (third session) with the per-camera student clause of SHIP_RULE, before any of
    # their results: tau calibrated per rule, on the pool as it is (OWN, as a realised teacher
    # would) or with each camera weighed alike (BALANCED: 54 of the 85 photos are IDRiD's, so a rule
    # that calms IDRiD lowers the pooled tau and every other camera's clean photos cross it); and
    # the under-exposure ramp that helped the dark kinds beside the noise term that helped noise
    "shipped, balanced tau": {TAU: BALANCED},
    "half traced + noise term 2-4x, own tau": {PARTS: half_traced, TAU: OWN,
                                               "brightness_visibility": noise_term((2.0, 4.0))},
    "half traced + noise term 2-4x, balanced tau": {PARTS: half_traced, TAU: BALANCED,
                                                    "brightness_visibility": noise_term((2.0, 4.0))},
    "contrast alone + noise term 2-4x, balanced tau": {PARTS: contrast_only, TAU: BALANCED,
                                                       "brightness_visibility": noise_term((2.0, 4.0))},
    "shipped + noise term 2-4x + under-exposure 0.4-0.85, balanced tau": {
        TAU: BALANCED, "UNDEREXPOSED": (0.4, 0.85), "brightness_visibility": noise_term((2.0, 4.0))},
    # added 2026-11-30 (third session), after the TAU rules' results (tau does not enter the student's
    # target, the cells' mean anomaly: their heads are their base rules' exactly) and before any of
    # these rules' results: each perturbation judged against its camera group's references
    "shipped, camera references": {SOURCE: CAMERA},
    "half traced + noise term 2-4x, camera references": {PARTS: half_traced, SOURCE: CAMERA,
                                                          "brightness_visibility": noise_term((2.0, 4.0))},
    "contrast alone + noise term 2-4x, camera references": {PARTS: contrast_only, SOURCE: CAMERA,
                                                             "brightness_visibility": noise_term((2.0, 4.0))},
    "contrast alone + noise term 2-4x, camera references and noise": {
        PARTS: contrast_only, SOURCE: CAMERA, "brightness_visibility": source_noise_term((2.0, 4.0))},
    # added 2026-11-30 (third session), before any of their results: the optic disc, bright by
    # anatomy, exempt from the washed-out ramp (on the pool's photos as they are, the disc's mean
    # anomaly is 0.28-0.53 against 0.19-0.32 elsewhere under the shipped rule)
    "shipped, disc exempt": {DISC: True, "brightness_visibility": disc_exempt},
    "half traced + noise term 2-4x, disc exempt": {PARTS: half_traced, DISC: True,
                                                   "brightness_visibility": noise_term((2.0, 4.0), exposure=disc_exempt)},
    "contrast alone + noise term 2-4x, disc exempt": {PARTS: contrast_only, DISC: True,
                                                      "brightness_visibility": noise_term((2.0, 4.0), exposure=disc_exempt)},
    # added 2026-11-30 (third session), after the disc rules' results and before any of these: the
    # validation HRF photo's cells that the disc-exempt heads flag lie at the rim of its field, where
    # the teacher's labels are 0.5-0.7 under every rule, mostly from the under-exposure ramp (0.43-0.49
    # without it): its field darkens toward the rim as clean fields do, and the σ-4 px level counts
    # the black outside the FOV. The level averaged over FOV pixels only, against the clean pool's
    # level at the same eccentricity
    "shipped, disc exempt, vignetting": {DISC: True, "brightness_visibility": DISC_VIGNETTING},
    "half traced + noise term 2-4x, disc exempt, vignetting": {
        PARTS: half_traced, DISC: True,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "contrast alone + noise term 2-4x, disc exempt, vignetting": {
        PARTS: contrast_only, DISC: True,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    # added 2026-11-30 (third session), after the vignetting rules' results and before any of these:
    # the pool's profile is IDRiD's mostly (0.76 at the rim) while HRF's rim is darker (about 0.5);
    # each photo judged against its camera group's profile
    "half traced + noise term 2-4x, disc exempt, camera vignetting": {
        PARTS: half_traced, DISC: True, CAMERA_VIGNETTING: True,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "contrast alone + noise term 2-4x, disc exempt, camera vignetting": {
        PARTS: contrast_only, DISC: True, CAMERA_VIGNETTING: True,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    # added 2026-11-30 (fourth session), with the mean_gain_other_cameras clause of SHIP_RULE and
    # before any of their results. (a) Judged against the clean level at its eccentricity, a region
    # is no longer dark merely for lying at the rim, so the under-exposure ramp can start where a
    # grader starts to see a shadow: fully visible only from 0.85 x the expected level, not 0.7 x
    # the photo's median (against the median, that ramp raised HRF's rim: 'under-exposure
    # 0.4-0.85'). (b) The disc judged by vessel depth alone, its Weber contrast exempt too.
    "half traced + noise term 2-4x, disc exempt, camera vignetting, under-exposure 0.4-0.85": {
        PARTS: half_traced, DISC: True, CAMERA_VIGNETTING: True, "UNDEREXPOSED": (0.4, 0.85),
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "contrast alone + noise term 2-4x, disc exempt, camera vignetting, under-exposure 0.4-0.85": {
        PARTS: contrast_only, DISC: True, CAMERA_VIGNETTING: True, "UNDEREXPOSED": (0.4, 0.85),
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "half traced + noise term 2-4x, disc exempt with its contrast, camera vignetting": {
        PARTS: half_traced, DISC: True, CAMERA_VIGNETTING: True, "visibility": disc_depth_only,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "contrast alone + noise term 2-4x, disc exempt with its contrast, camera vignetting": {
        PARTS: contrast_only, DISC: True, CAMERA_VIGNETTING: True, "visibility": disc_depth_only,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "half traced + noise term 2-4x, disc exempt with its contrast, camera vignetting, under-exposure 0.4-0.85": {
        PARTS: half_traced, DISC: True, CAMERA_VIGNETTING: True, "visibility": disc_depth_only,
        "UNDEREXPOSED": (0.4, 0.85), "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    # added 2026-11-30 (fourth session), after the rules above and before any of these rules'
    # results: on the HRF photos as they are, the rim's excess anomaly (cells touching the FOV edge
    # 0.25-0.32 against 0.16-0.21 inside, under the closest rule) stays with no exposure, noise or
    # Weber term alike and goes only with no visibility term at all (0.03-0.05): the vessels that
    # are traced there are shallower (depth about half the centre's past ρ 0.85) and of lower
    # contrast, as peripheral vessels are. Each vessel judged against the clean depth and contrast
    # at its eccentricity, the pool's or its camera group's
    "half traced + noise term 2-4x, disc exempt, camera vignetting, camera vessel profile": {
        PARTS: half_traced, DISC: True, CAMERA_VIGNETTING: True, VESSEL_PROFILE_KEY: CAMERA,
        "visibility": profiled_visibility, "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "contrast alone + noise term 2-4x, disc exempt, camera vignetting, camera vessel profile": {
        PARTS: contrast_only, DISC: True, CAMERA_VIGNETTING: True, VESSEL_PROFILE_KEY: CAMERA,
        "visibility": profiled_visibility, "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "half traced + noise term 2-4x, disc exempt, vignetting, vessel profile": {
        PARTS: half_traced, DISC: True, VESSEL_PROFILE_KEY: POOL,
        "visibility": profiled_visibility, "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    # added 2026-11-30 (fifth session), after the DRIMDB-dev clause's results, before any of theirs: the
    # vessel-profile rules' heads rank DRIMDB-dev's Bad photos (mostly blurred) over its Good ones at
    # 0.984 against the shipped rule's 1.000. Halfway, a vessel the visible extractor loses under blur
    # counts only half missing; these weigh the extractor's losses 3/4 and wholly (the shipped share),
    # with the same field profiles, disc exemption and noise term.
    "three-quarter traced + noise term 2-4x, disc exempt, vignetting, vessel profile": {
        PARTS: three_quarter_traced, DISC: True, VESSEL_PROFILE_KEY: POOL,
        "visibility": profiled_visibility, "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    "shipped traced + noise term 2-4x, disc exempt, vignetting, vessel profile": {
        DISC: True, VESSEL_PROFILE_KEY: POOL,
        "visibility": profiled_visibility, "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING)},
    # added 2026-11-30 (sixth session), with the CLAHE clause of SHIP_RULE and before any of their
    # results: v3.7c (the three-quarter rule above, realised) failed the held-out check on CLAHE'd
    # DRIMDB-dev Good photos (37 of 42 ungradable). Ad hoc, on 12 of those photos, its teacher's mean
    # anomaly rose from 0.36 to 0.56 when CLAHE'd, and without its noise term fell from 0.33 to 0.26:
    # CLAHE'd, their residual level was 2.8x the pool's (1.16x as they are), inside the 2-4x ramp
    # (measured since by benchmarks/noise_measures.py on all of DRIMDB-dev's Good photos: median
    # 2.48x CLAHE'd, 1.02x as published; the anomalies above on the same 12). Ad hoc on 16 pool photos, the
    # residual over the photo's contrast scale (relative_noise_level) stays at 0.73-1.43x its level
    # as it is under CLAHE and unsharp masks (the absolute level: 1.9-4.0x) and rises 2.5-4.5x under
    # σ-8 grey-level speckle (absolute: 2.5-4.7x), 5.0-9.1x under σ 20 (absolute: 5.8-11.6x).
    # The three-quarter rule without a noise term, and with the relative one:
    "three-quarter traced, disc exempt, vignetting, vessel profile": {
        PARTS: three_quarter_traced, DISC: True, VESSEL_PROFILE_KEY: POOL,
        "visibility": profiled_visibility, "brightness_visibility": DISC_VIGNETTING},
    "three-quarter traced + relative noise term 2-4x, disc exempt, vignetting, vessel profile": {
        PARTS: three_quarter_traced, DISC: True, VESSEL_PROFILE_KEY: POOL, "visibility": profiled_visibility,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING, relative=True)},
    # added 2026-11-30 (sixth session), after the two rules above were judged (neither a candidate:
    # other cameras +0.005 without a noise term, +0.0096 and CLAHE'd Good ungradable 0.238 with the
    # relative one) and before any of these rules' results. Ad hoc, on DRIMDB-dev's Good photos at the
    # teacher's geometry, the relative level does not rise under CLAHE (median 1.15x the pool's
    # raw, 1.11x CLAHE'd) but sits at 2.0-2.3x on several raw photos (little contrast), while their
    # absolute level stays at 0.8-1.0x (noise_measures.json, since: medians 1.16x and 1.11x, the
    # relative level up to 2.3x as published): each level alone fades clean photos of some camera. A region
    # fades only where both are high (joint_noise_level); and the relative term with a later ramp.
    "three-quarter traced + joint noise term 2-4x, disc exempt, vignetting, vessel profile": {
        PARTS: three_quarter_traced, DISC: True, VESSEL_PROFILE_KEY: POOL, "visibility": profiled_visibility,
        "brightness_visibility": noise_term((2.0, 4.0), exposure=DISC_VIGNETTING, relative=JOINT)},
    "three-quarter traced + relative noise term 3-6x, disc exempt, vignetting, vessel profile": {
        PARTS: three_quarter_traced, DISC: True, VESSEL_PROFILE_KEY: POOL, "visibility": profiled_visibility,
        "brightness_visibility": noise_term((3.0, 6.0), exposure=DISC_VIGNETTING, relative=True)},
}
SEEDS = (0, 1, 2)
#: Fixed before the first run: a rule is a candidate to ship only if its seeds' mean overall AUROC
#: beats the shipped rule's by ≥ 0.01, its worst seed beats the shipped rule's median seed, and its
#: mean ranking is not lower by more than 0.01. A candidate then needs the held-out check
#: (accuracy.py beside the shipped student) before anything ships. Tightened 2026-11-30, before the
#: noise-term rules' first result: no kind's mean AUROC may be lower than the shipped rule's by more
#: than 0.05 (the half-traced rule lost 0.17 on noise and only the held-out check caught it).
#: Tightened again 2026-11-30, after the second rejection and before the source-reference rules'
#: first result: the teacher's mean clean false-positive rate with each camera left out of its
#: calibration (:func:`clean_fpr`) may exceed the shipped rule's by at most 0.005. Measured on the
#: rules already judged, it orders them as the held-out checks did: shipped 0.049, the rejected
#: halfway rule 0.062 and contrast alone + noise 0.071 (their held-out clean FPR 0.061 and 0.102).
#: It is softer for SOURCE rules (see :func:`clean_fpr`): it passed v3.7b, which the held-out check rejected.
#: Tightened again 2026-11-30 (third session that day), before any result of the TAU rules: on each
#: camera the held-out check measures (DRIVE and HRF; the validation photos hold no EyePACS), the
#: heads' clean false-positive rate on unseen photos (:func:`student_clean_fpr`) may be at most
#: max(2 × the shipped rule's, the shipped rule's + 0.005). Measured on the rules already judged, it
#: rejects both rejected candidates (v3.7: 0.011 / 0.032, v3.7b: 0.008 / 0.024; shipped 0.001 / 0.003).
#: Tightened again 2026-11-30 (fourth session), before any result of the rules added with it: 10 of
#: the 17 validation photos are IDRiD's, a camera the held-out check never sees (it measures DRIVE,
#: HRF and EyePACS photos), and v3.7's study gain (+0.080) became +0.003 there. The seeds' mean
#: overall AUROC on the validation photos of the other cameras (:func:`camera` ≠ IDRiD: DRIVE 4, HRF
#: 1, REFUGE 1, the scikit-image retina) must beat the shipped rule's by ``mean_gain_other_cameras``
#: too. A row run before the clause has no such figure and is no candidate.
#: Changed 2026-11-30 (fourth session), before any result under it: the per-camera clause reads the
#: heads' clean rate with their thresholds set as the shipped recipe sets them, on the reference
#: photos only (``distill.reference_photos``: judged good by eye, no IDRiD), not on every training
#: photo: a rule that calms IDRiD's photos (two thirds of the training photos) lowered the study's
#: thresholds, and so raised DRIVE's and HRF's rates, where the shipped threshold never sees IDRiD.
#: Its controls: the rejected candidates' rules (CONTROLS) must still fail the clause under it, or
#: the clause keeps the training-photo rate (:func:`fpr_estimator`); both rates are reported.
#: Changed 2026-11-30 (fifth session), AFTER every rule's camera-left-out rates had been seen (the
#: vessel-profile rules failed on EyePACS alone), before any result of the measurement it adds: the
#: teacher-level rate of EyePACS, the held-out check's third camera, is a poor proxy for the held-out
#: clean-FPR clause. It left the camera out of the teacher's calibration (the shipped pipeline never
#: does: EyePACS is in it), it passed v3.7b (0.042, shipped 0.059), whose student then failed that
#: clause on an EyePACS photo (15_left), and it rests on one photo of three (9575_left). It is
#: replaced by what the held-out clause measures: the student's clean rate on each EyePACS photo of
#: the pool with that photo left out of the head's training and of its thresholds (seed 0, the
#: reference-photo thresholds; ``left_out_fpr``, since retired), its mean over the photos at most
#: max(2 × the shipped rule's, the shipped rule's + 0.005). The teacher-level clause then averages
#: the other camera groups. Its controls, fixed with it: both CONTROLS rows (the candidates that
#: failed the held-out clean FPR) must fail the new clause, or the old clause (every group, no
#: left-out student clause) stays in force.
#: Result (5df0799): the controls' left-out rates (0.106, 0.104) are below the shipped rule's (0.200):
#: that clause was never in force, and its measurement (``left_out_fpr``) is retired; its figures
#: are in results/teacher_rules.json as of 5df0799.
#: Added 2026-11-30 (fifth session), before any result of the measurement it adds (:func:`drimdb_check`):
#: a camera the pool never saw, at student level, as the held-out check's real-photo clauses read it.
#: Each head (its reference-photo threshold, as ``student_clean_fpr_reference`` sets it) maps
#: DRIMDB-dev's Good and Bad photos (checking photos, never trained on; the held-out check already
#: decides on them): the share of the Good photos' cells it flags may be at most max(2 × the shipped
#: rule's, the shipped rule's + 0.005), and its image AUROC Bad vs Good (mean cell score) no lower
#: than the shipped rule's by more than ``drimdb_auroc_drop``; means over the seeds. Its controls,
#: fixed with it: if both CONTROLS rows fail it (both failed the held-out check, on clean FPR and, for
#: v3.7b, DRIMDB-dev AUROC), it is in force and REPLACES the teacher-level camera-left-out clause,
#: which let v3.7b through (0.051 ≤ 0.054); otherwise it is reported only and the old clauses stay
#: (:func:`drimdb_trusted`). Changed after that clause's results were seen (every rule's), before this one's.
#: Result (e48b316): both controls fail it, so it is in force. The three-quarter traced rule then passed
#: (fd619a0) and, as teacher v3.7c, passed every map clause of HELD_OUT_RULE but failed two real-photo
#: ones (CLAHE'd DRIMDB-dev Good ungradable 37 of 42): rejected (accuracy_teacher37c.json, 5fe7466).
#: Added 2026-11-30 (sixth session), before any result of the measurement it adds: the held-out
#: check's CLAHE clause at student level (:func:`drimdb_check`, :func:`clahe_ok`): the share of
#: DRIMDB-dev's Good photos, CLAHE'd as real_photos.py CLAHEs them, that the heads score ungradable
#: (mean cell score at or above each head's in-sample reference-photo gradable threshold; mean over the
#: seeds) may exceed the shipped rule's by at most ``drimdb_clahe_ungradable_over_shipped`` (two photos
#: of 42). Its control, fixed with it: v3.7c's rule (CLAHE_CONTROL) must fail it, or it is reported
#: only (:func:`clahe_trusted`). It applies on top of every other clause in force.
SHIP_RULE = {"mean_gain": 0.01, "worst_seed_over_shipped_median": True, "ranking_drop": 0.01, "kind_drop": 0.05,
             "clean_fpr_loco_over_shipped": 0.005,
             "student_clean_fpr_cameras": ("DRIVE", "HRF"), "student_clean_fpr_times_shipped": 2.0,
             "student_clean_fpr_over_shipped": 0.005, "mean_gain_other_cameras": 0.01,
             "drimdb_auroc_drop": 0.01, "drimdb_clahe_ungradable_over_shipped": 2 / 42}
#: The held-out check a candidate must then pass (accuracy.py beside the shipped student, real_photos.py).
HELD_OUT_RULE = """Pre-registered (2026-11-29 22:46 UTC, before any result of benchmarks/teacher_rules.py was seen) rule to ship
a teacher-rule candidate (one that passes teacher_rules.SHIP_RULE), judged in ONE accuracy.py run beside
the shipped student and ONE real_photos.py run of the candidate:
 ship iff soft patch AUROC >= shipped + 0.005 AND synth patch AUROC >= shipped - 0.005
 AND clean FPR <= 0.05 AND ranking soft/synth >= 0.97 AND DRIMDB-dev AUROC >= 0.99
 AND DRIMDB-dev raw: Good 42/42 gradable, Bad 23/23 refused or ungradable
 AND CLAHE'd DRIMDB-dev Good scored ungradable <= 3 of 42 (shipped: 2)
 AND Graham-subtracted DRIMDB-dev Bad refused or ungradable >= 6 of 23 (shipped: 8).
If several rules pass SHIP_RULE, only the one with the highest mean overall AUROC is tried.
Otherwise reject and keep the result files."""


@contextlib.contextmanager
def rule(swaps: dict) -> Iterator[None]:
    """Swap names of the teacher module for the duration of the block."""
    names = {k: v for k, v in swaps.items() if k not in (PARTS, SOURCE, TAU, DISC, CAMERA_VIGNETTING, VESSEL_PROFILE_KEY)}
    saved = {k: getattr(T, k) for k in names}
    try:
        for k, v in names.items():
            setattr(T, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(T, k, v)


def judge_all(teacher: Teacher, parts: TeacherParts, rules: list[str], source: dict | None = None,
              taus: dict[str, float] | None = None, camera_refs: dict | None = None) -> dict[str, T.TeacherOutput]:
    """One perturbation's parts judged under each of ``rules``; ``source``: the references of its
    unperturbed photo (:func:`source_references`), ``camera_refs``: those of its camera group, for
    the rules that judge against them; ``taus``: the calibrated tau of each TAU rule (:func:`rule_taus`)."""
    memo: dict = {}  # vessel depth per kernel, the disc, ρ: the same under every rule

    def depth_and_background(rgb: np.ndarray, kernel: int) -> tuple[np.ndarray, np.ndarray]:
        assert rgb is parts.photo.rgb
        if kernel not in memo:
            memo[kernel] = SHIPPED_DEPTH(rgb, kernel)
        return memo[kernel]

    out = {}
    for name in rules:
        swaps = RULES[name]
        judge = teacher
        refs = camera_refs if swaps.get(SOURCE) == CAMERA else source
        if swaps.get(SOURCE) and refs and "vessel_depth" in refs:
            judge = copy.copy(teacher)
            judge.config = {**teacher.config, "vessel_depth": refs["vessel_depth"],
                            "vessel_contrast": refs["vessel_contrast"]}
            SOURCE_NOISE[:] = [refs["noise"]]
        elif swaps.get(SOURCE):  # the unperturbed photo gave no references: the pool's
            SOURCE_NOISE[:] = [NOISE_REFERENCE[0]]
        if taus and name in taus:
            judge = copy.copy(judge)
            judge.tau = taus[name]
        ACTIVE_VIGNETTING[:] = (camera_refs or {}).get("vignetting", VIGNETTING) if swaps.get(CAMERA_VIGNETTING) \
            else VIGNETTING
        ACTIVE_VESSEL_PROFILE[:] = (camera_refs or {}).get("vessel_profile", VESSEL_PROFILE) \
            if swaps.get(VESSEL_PROFILE_KEY) == CAMERA else VESSEL_PROFILE
        if swaps.get(VESSEL_PROFILE_KEY):
            if "rho" not in memo:
                memo["rho"] = rho_map(parts.photo.fov_mask)
            CURRENT_RHO[:] = [memo["rho"]]
        if swaps.get(DISC):
            if "disc" not in memo:
                memo["disc"] = find_disc(parts)
            CURRENT_DISC[:] = [memo["disc"]]
        with rule({"_depth_and_background": depth_and_background, **swaps}):
            out[name] = judge.judge(swaps.get(PARTS, lambda p: p)(parts))
    return out


#: a pool photo as it is: (its index, its parts, :func:`source_references` of them)
Unperturbed = tuple[int, TeacherParts, dict]


def unperturbed_parts(store: PartsStore) -> list[Unperturbed]:
    """Each pool photo's unperturbed parts (perturbation 0) with their :func:`source_references`: one
    pass over the store, before the labels, so that TAU rules are calibrated on them first."""
    from tqdm import tqdm

    return [(i, parts, source_references(parts)) for i, k, parts in tqdm(store, desc="unperturbed", mininterval=10)
            if k == 0]


def camera_references(unperturbed: list[Unperturbed], names: list[str]) -> dict[str, dict]:
    """Each camera group's :func:`references`, from its photos as they are."""
    groups: dict[str, list[TeacherParts]] = {}
    for i, parts, _ in unperturbed:
        groups.setdefault(camera(names[i]), []).append(parts)
    return {g: {**references(group), "vignetting": vignetting_profile(group), "vessel_profile": vessel_profile(group)}
            for g, group in groups.items()}


def clean_outputs(teacher: Teacher, unperturbed: list[Unperturbed], rules: list[str], names: list[str],
                  cameras: dict[str, dict]) -> dict[str, list[tuple[str, T.TeacherOutput]]]:
    """The pool's photos as they are judged under each of ``rules``: (camera group, output) pairs;
    ``cameras``: :func:`camera_references`."""
    outs: dict[str, list[tuple[str, T.TeacherOutput]]] = {name: [] for name in rules}
    for i, parts, source in unperturbed:
        for name, output in judge_all(teacher, parts, rules, source, camera_refs=cameras.get(camera(names[i]), {})).items():
            outs[name].append((camera(names[i]), output))
    return outs


def rule_taus(outs: dict[str, list[tuple[str, T.TeacherOutput]]]) -> dict[str, float]:
    """The tau each TAU rule calibrates on the pool's photos as they are (:func:`clean_tau`), from
    :func:`clean_outputs`."""
    return {n: clean_tau(items, RULES[n][TAU] == BALANCED) for n, items in outs.items() if RULES.get(n, {}).get(TAU)}


def judged(teacher: Teacher, store: PartsStore, rules: list[str], sources: dict[int, dict],
           taus: dict[str, float], cameras: dict[int, dict]) -> dict[str, distill.Labels]:
    """The labels of the stored parts under each of ``rules`` (one pass over the store); ``sources``:
    each photo's :func:`source_references`; ``taus``: :func:`rule_taus`; ``cameras``: each photo's
    camera group's references."""
    from tqdm import tqdm

    labels = {name: distill.Labels() for name in rules}
    for i, k, parts in tqdm(store, desc="judging", mininterval=10):
        for name, output in judge_all(teacher, parts, rules, sources.get(i, {}), taus, cameras.get(i)).items():
            labels[name].add(i, k, output)
    return labels


def camera(name: str) -> str:
    """The camera group of a pool photo: its dataset; the pool's few REFUGE, SCES and example photos together."""
    parts = name.split("/")
    group = parts[1] if parts[0] == "unlabelled" and len(parts) > 1 else parts[0]
    return group if group in ("IDRiD", "DRIVE", "HRF", "EyePACS") else "other"


def clean_fpr(outs: dict[str, list[tuple[str, T.TeacherOutput]]], budget: float = 0.05,
              photos: list[str] | None = None) -> dict[str, dict]:
    """Teacher-level clean false-positive rate of each rule, one camera left out at a time.

    ``outs``: the pool's photos as they are judged under each rule (:func:`clean_outputs`); for each
    camera group, tau and phi are calibrated as ``teacher.calibrate`` does (tau: 90th percentile of
    clean pixel anomalies, each group weighed alike for a BALANCED rule; phi: the ``budget`` quantile
    of clean patch fractions) on the *other* groups' photos, and the rate is the share of the
    left-out group's patches (FOV coverage ≥ 0.5) flagged.
    In-sample the rate is the budget by construction; left out, it shows how far a rule's notion of
    a clean photo depends on the camera (the held-out check's clean-FPR clause, which both rejected
    candidates failed, measures new photos of the pool's cameras against a pool-wide calibration).
    Only tau and phi leave the camera out: the vessel-depth, contrast and noise references stay the
    pool's. A SOURCE rule judges each clean photo against its own references, which makes this rate
    softer for it than for the others: it let v3.7b through (0.051), whose student then failed the
    held-out clean rate (0.065). :func:`student_clean_fpr` estimates that rate directly.
    ``photos``: the names of ``outs``' photos, in their order; then also each photo's flagged share
    when its group is left out (``per_photo``): a group of three photos can rest on one."""
    result = {}
    for name, items in outs.items():
        per: dict[str, float] = {}
        by_photo: dict[str, float] = {}
        for group in sorted({g for g, _ in items}):
            others = [(g, o) for g, o in items if g != group]
            rest = [o for _, o in others]
            tau = clean_tau(others, RULES[name].get(TAU) == BALANCED)
            frac = lambda o: T.pool_cells(o.anomaly, o.fov, T.GRID, tau)[1][o.coverage >= 0.5]  # noqa: E731
            phi = max(float(np.quantile(np.concatenate([frac(o) for o in rest]), 1 - budget)), 0.01)
            per[group] = float(np.mean(np.concatenate([frac(o) for g, o in items if g == group]) >= phi))
            if photos:
                by_photo.update({photos[n]: float(np.mean(frac(o) >= phi)) for n, (g, o) in enumerate(items) if g == group})
        result[name] = {"per_camera": per, "mean": float(np.mean(list(per.values())))}
        if photos:
            result[name]["per_photo"] = by_photo
    return result


HALF = "shipped rule, half the perturbations"


def subset(fs: distill.FeatureSet, keep: Callable[[int], bool]) -> distill.FeatureSet:
    """The samples of ``fs`` whose perturbation index passes ``keep``."""
    idx = [n for n, k in enumerate(fs.perturbation) if keep(k)]
    pick = lambda xs: [xs[n] for n in idx]  # noqa: E731
    return distill.FeatureSet(fs.size, fs.data[idx], pick(fs.soft), pick(fs.score), pick(fs.valid), pick(fs.photo),
                              pick(fs.perturbation), None if fs.region is None else pick(fs.region))


def distil(name: str, fs: distill.FeatureSet, features: str, train: set[int], heads: dict, rows: dict,
           names: list[str]) -> None:
    """A head per seed from ``fs``'s labels on the ``train`` photos (the shipped recipe), into ``heads``;
    the row's mean label over their valid cells and the heads' clean false-positive rates into ``rows``."""
    mine = np.array([p in train for p in fs.photo])
    rows[name] = {"swaps": {k: _describe(v) for k, v in RULES.get(name, {}).items()},
                  "mean_label": float(np.stack(fs.score)[mine][np.stack(fs.valid)[mine]].mean())}
    thresholds = {"student_clean_fpr": train, "student_clean_fpr_reference": train & (distill.reference_photos(names) or train)}
    rates: dict[str, list[dict]] = {key: [] for key in thresholds}
    gradable = []
    for seed in SEEDS:
        result = distill.train_adapter(fs, features, distill.DEFAULT["head"], seed=seed, train_photos=train,
                                       target="soft")  # the teacher's labels under this rule (the score head's target)
        heads[f"{name} | seed {seed}"] = result.head.eval()
        for key, r in student_clean_fpr(result, fs, train, names, thresholds).items():
            rates[key].append(r)
        # the photo threshold as the shipped recipe's in-sample half sets it (the 95th percentile of
        # the reference photos' mean cell scores): what drimdb_check's CLAHE clause scores against
        gradable.append(distill.clean_thresholds(result, fs, reference=thresholds["student_clean_fpr_reference"])
                        ["gradable_threshold"])
    rows[name]["reference_threshold_by_seed"] = [r["threshold"] for r in rates["student_clean_fpr_reference"]]
    rows[name]["reference_gradable_threshold_by_seed"] = gradable
    for key, rs in rates.items():
        rows[name][f"{key}_by_seed"] = [r["overall"] for r in rs]
        rows[name][key] = {"overall": float(np.mean([r["overall"] for r in rs])),
                           "per_camera": {g: float(np.mean([r["per_camera"][g] for r in rs])) for g in rs[0]["per_camera"]}}
    print(name, rows[name], flush=True)


def student_clean_fpr(result: distill.AdapterResult, fs: distill.FeatureSet, train: set[int], names: list[str],
                      thresholds: dict[str, set[int]]) -> dict[str, dict]:
    """A head's clean false-positive rate on photos it never saw, once per entry of ``thresholds``
    (name → the training photos that set the threshold): its patch threshold set as the shipped
    one's starts (the upper CONFIDENCE bound of the 95th percentile of those photos' unperturbed
    cells, photo bootstrap; in-sample, where the shipped threshold is out-of-fold, so this reads
    somewhat higher), the share of the other photos' unperturbed cells at or above it, overall and
    per camera group. The held-out check's clean-FPR clause asks the same of the distilled student
    on new photos. The shipped recipe sets its threshold on the reference photos only
    (``distill.reference_photos``: judged good by eye, no IDRiD); ``distil`` measures it that way and
    on every training photo."""
    def cells(photos: set[int]) -> list[tuple[int, np.ndarray]]:
        idx = distill._unperturbed(fs, photos)
        prob, _, _, valid = distill.predict(result, fs, samples=idx)
        return [(fs.photo[n], p[v]) for n, p, v in zip(idx, prob, valid)]

    by: dict[str, list[np.ndarray]] = {}
    for photo, c in cells(set(fs.photo) - train):
        by.setdefault(camera(names[photo]), []).append(c)
    out = {}
    for key, photos in thresholds.items():
        threshold = distill.upper_quantile([c for _, c in cells(photos)], 0.95, distill.CONFIDENCE)
        out[key] = {"overall": float(np.mean(np.concatenate([c for v in by.values() for c in v]) >= threshold)),
                    "per_camera": {g: float(np.mean(np.concatenate(v) >= threshold)) for g, v in sorted(by.items())},
                    "threshold": float(threshold)}
    return out


#: The rejected candidates' rules (v3.7, v3.7b): the controls of the reference-photo estimator
CONTROLS = ("contrast alone + noise term 2-4x", "half traced + noise term 2-4x, source references")


def fpr_estimator(rows: dict) -> str:
    """Which student clean rate SHIP_RULE's per-camera clause reads: the reference-photo one
    (``student_clean_fpr_reference``) where both CONTROLS rows have it and fail the clause under it,
    as they failed the held-out check; otherwise the training-photo one (``student_clean_fpr``).
    A row kept from a run before the reference rate existed lacks it and then fails the clause:
    re-run it (``--rules``) to judge it."""
    key = "student_clean_fpr_reference"
    return key if controls_fail(rows, lambda row: key in row, lambda row, base: student_fpr_ok(row, base, key)) \
        else "student_clean_fpr"


def within_clean_bound(mine: float, shipped: float) -> bool:
    """SHIP_RULE's bound on a clean rate: at most max(``student_clean_fpr_times_shipped`` × the
    shipped rule's, the shipped rule's + ``student_clean_fpr_over_shipped``)."""
    return mine <= max(SHIP_RULE["student_clean_fpr_times_shipped"] * shipped,
                       shipped + SHIP_RULE["student_clean_fpr_over_shipped"])


def controls_fail(rows: dict, has: Callable[[dict], bool], ok: Callable[[dict, dict], bool],
                  controls: tuple[str, ...] = CONTROLS) -> bool:
    """Whether the shipped row and every ``controls`` row have the clause's figures (``has``) and
    every control fails ``ok`` (the rejected candidates failed the held-out check): what puts a new
    clause in force."""
    return has(rows[SHIPPED]) and all(c in rows and has(rows[c]) and not ok(rows[c], rows[SHIPPED]) for c in controls)


def student_fpr_ok(row: dict, base: dict, key: str = "student_clean_fpr") -> bool:
    """SHIP_RULE's per-camera bound on the heads' clean false-positive rate ``key`` (a row without it fails)."""
    if key not in row or key not in base:
        return False
    mine, shipped = row[key]["per_camera"], base[key]["per_camera"]
    return all(within_clean_bound(mine[c], shipped[c]) for c in SHIP_RULE["student_clean_fpr_cameras"])


def drimdb_check(heads: dict, rows: dict, data: str | None, size: int, features: str) -> None:
    """Each row's heads on DRIMDB-dev's Good and Bad photos (as published; checking photos, never
    trained on): the share of the Good photos' valid cells at or above each head's reference-photo
    threshold, and the image AUROC Bad vs Good of the mean cell score; means over the seeds, into
    ``rows[name]["drimdb"]``. And the Good photos CLAHE'd as the held-out check's real_photos.py
    CLAHEs them (``efiqa.eval.synth.preprocessed``): the share scored ungradable (mean cell score at or
    above the head's reference-photo gradable threshold; a refused photo counts as ungradable) and of
    their cells flagged; reported only, the median mean score of the Good, Bad and CLAHE'd Good photos
    minus that threshold, per seed (how much margin the threshold leaves). Crop, coverage and refusals
    as the runtime gives them (a refused photo is otherwise left out and counted)."""
    import csv

    import torch
    from adapter_ground_truth import feature_reader
    from tqdm import tqdm

    from efiqa.errors import EfiqaError
    from efiqa.eval.metrics import auroc
    from efiqa.eval.synth import preprocessed
    from efiqa.fov import find_fov
    from efiqa.imageio import read_image
    from efiqa.train.data import data_root

    read = feature_reader(next(iter(heads.values())), features, size)
    root = data_root(data) / "DRIMDB-dev"
    maps: dict[str, list] = {"Good": [], "Bad": [], CLAHE_GOOD: []}
    refused: dict[str, int] = {k: 0 for k in maps}
    with open(root / "labels.csv", newline="") as f:  # the dataset's labels, as accuracy.py and real_photos.py read them
        files = [(r["label"], root / r["image"]) for r in csv.DictReader(f) if r["label"] in ("Good", "Bad")]
    for label, path in tqdm(files, desc="DRIMDB-dev", mininterval=10):
        img = read_image(path)
        for kind in [label, CLAHE_GOOD] if label == "Good" else [label]:
            try:  # a photo whose FOV is not found (for CLAHE too) is refused, not a crash
                x = img if kind == label else preprocessed(img, find_fov(img, path.name), "clahe")
                result, feats = read(distill.working_copy(x))
            except EfiqaError:
                refused[kind] += 1
                continue
            valid = result.coverage >= 0.5
            with torch.no_grad():
                maps[kind].append({n: torch.sigmoid(h(feats))[0, 0].numpy()[valid] for n, h in heads.items()})
    for name, row in rows.items():
        if "reference_threshold_by_seed" not in row:
            continue
        flagged, aurocs, clahe_flagged, clahe_ungradable = [], [], [], []
        for seed, threshold in zip(SEEDS, row["reference_threshold_by_seed"]):
            key = f"{name} | seed {seed}"
            flagged.append(float(np.mean(np.concatenate([m[key] for m in maps["Good"]]) >= threshold)))
            scores = [float(m[key].mean()) for label in ("Good", "Bad") for m in maps[label]]
            aurocs.append(auroc(np.array(scores), np.array([0] * len(maps["Good"]) + [1] * len(maps["Bad"]))))
            clahe_flagged.append(float(np.mean(np.concatenate([m[key] for m in maps[CLAHE_GOOD]]) >= threshold)))
        margins: dict[str, list[float]] = {"Good": [], "Bad": [], CLAHE_GOOD: []}
        for seed, threshold in zip(SEEDS, row.get("reference_gradable_threshold_by_seed", [])):
            key = f"{name} | seed {seed}"
            ungradable = sum(float(m[key].mean()) >= threshold for m in maps[CLAHE_GOOD]) + refused[CLAHE_GOOD]
            clahe_ungradable.append(ungradable / (len(maps[CLAHE_GOOD]) + refused[CLAHE_GOOD]))
            for kind, ms in margins.items():  # where the photos' scores sit against the threshold (reported only)
                ms.append(float(np.median([m[key].mean() for m in maps[kind]])) - threshold)
        row["drimdb"] = {"good_flagged": float(np.mean(flagged)), "auroc": float(np.mean(aurocs)),
                         "good_flagged_by_seed": flagged, "auroc_by_seed": aurocs,
                         "clahe_good_flagged": float(np.mean(clahe_flagged)),
                         "photos": {k: len(v) for k, v in maps.items()}, "refused": refused}
        if clahe_ungradable:
            row["drimdb"].update(clahe_good_ungradable=float(np.mean(clahe_ungradable)),
                                 clahe_good_ungradable_by_seed=clahe_ungradable,
                                 median_score_minus_gradable_threshold_by_seed=margins)


def drimdb_ok(row: dict, base: dict) -> bool:
    """SHIP_RULE's DRIMDB-dev clause (a row without the figures fails)."""
    if "drimdb" not in row or "drimdb" not in base:
        return False
    mine, shipped = row["drimdb"], base["drimdb"]
    return (within_clean_bound(mine["good_flagged"], shipped["good_flagged"])
            and mine["auroc"] >= shipped["auroc"] - SHIP_RULE["drimdb_auroc_drop"])


#: drimdb_check's DRIMDB-dev Good photos CLAHE'd
CLAHE_GOOD = "Good, CLAHE'd"
#: v3.7c's rule: its student failed the held-out check on CLAHE'd DRIMDB-dev Good photos (the CLAHE clause's control)
CLAHE_CONTROL = "three-quarter traced + noise term 2-4x, disc exempt, vignetting, vessel profile"


def has_clahe(row: dict) -> bool:
    """Whether a row was run since the CLAHE clause was added (it has the clause's figure)."""
    return "clahe_good_ungradable" in row.get("drimdb", {})


def clahe_ok(row: dict, base: dict) -> bool:
    """SHIP_RULE's CLAHE clause: the share of CLAHE'd DRIMDB-dev Good photos the heads score ungradable
    (mean over the seeds) at most the shipped rule's + ``drimdb_clahe_ungradable_over_shipped`` (a row
    without the figure fails)."""
    if not (has_clahe(row) and has_clahe(base)):
        return False
    key = "clahe_good_ungradable"
    return row["drimdb"][key] <= base["drimdb"][key] + SHIP_RULE["drimdb_clahe_ungradable_over_shipped"]


def clahe_trusted(rows: dict) -> bool:
    """Whether the CLAHE clause is in force: only where the shipped row and CLAHE_CONTROL's have the
    figure and the control fails it, as its realised student failed the held-out check."""
    return controls_fail(rows, has_clahe, clahe_ok, (CLAHE_CONTROL,))


def drimdb_trusted(rows: dict) -> bool:
    """Whether the DRIMDB-dev clause is in force (and replaces the teacher-level camera-left-out
    clause): only where the shipped row and both CONTROLS rows have it and both controls fail it."""
    return controls_fail(rows, lambda row: "drimdb" in row, drimdb_ok)


def _describe(value: object) -> object:
    if isinstance(value, functools.partial):
        named = lambda v: ("the source photo's (or camera's)" if v is SOURCE_NOISE  # noqa: E731  (not its last value)
                           else _describe(v) if isinstance(v, functools.partial) else getattr(v, "__name__", v))
        return f"{value.func.__name__}({', '.join(f'{k}={named(v)}' for k, v in value.keywords.items())})"
    return getattr(value, "__name__", value)


def main(args: argparse.Namespace) -> None:
    import torch

    from adapter_ground_truth import ground_truth_records
    from evaluation import summarise
    from machine import stamp

    names, photos, teacher, store, labels_path = pool(args)
    NOISE_REFERENCE[:] = [noise_reference(names, photos)]
    RELATIVE_NOISE_REFERENCE[:] = [noise_reference(names, photos, relative_noise_level)]
    size, features = distill.DEFAULT["size"], distill.DEFAULT["features"]
    shipped = distill.cached_features(names, photos, teacher, args.teacher, (size,), args.augmentations, 0,
                                      args.cache)[size]
    chosen = args.rules or [*RULES, HALF]
    unknown = set(chosen) - {*RULES, HALF}
    if unknown:
        raise SystemExit(f"unknown rules {sorted(unknown)}; choose from {[*RULES, HALF]}")
    t0 = time.time()
    unperturbed = unperturbed_parts(store)
    judging = list(dict.fromkeys([SHIPPED, *(n for n in chosen if n != HALF)]))
    cameras = camera_references(unperturbed, names)
    VIGNETTING[:] = vignetting_profile([parts for _, parts, _ in unperturbed])
    VESSEL_PROFILE[:] = vessel_profile([parts for _, parts, _ in unperturbed])
    outs = clean_outputs(teacher, unperturbed, list(RULES), names, cameras)  # every rule's: the ship rule compares their rates
    taus = rule_taus(outs)
    labels = judged(teacher, store, judging, {i: source for i, _, source in unperturbed}, taus,
                    {i: cameras.get(camera(names[i]), {}) for i in range(len(names))})
    judge_s = time.time() - t0
    fpr = clean_fpr(outs, photos=[names[i] for i, _, _ in unperturbed])
    fpr[HALF] = fpr[SHIPPED]  # the shipped rule's labels
    reference = pickle.loads(labels_path.read_bytes())
    same = labels[SHIPPED]
    if same.samples != reference.samples or not all(np.array_equal(a, b) for a, b in zip(same.score, reference.score)):
        raise SystemExit("the stored parts do not give the cached labels: stale parts cache")
    val = {i for i in range(len(names)) if i % 5 == 0}
    train = set(range(len(names))) - val
    heads: dict[str, torch.nn.Module] = {}
    rows: dict[str, dict] = {}
    sets = {name: distill.feature_sets(lab, {size: shipped.data})[size] for name, lab in labels.items()}
    for name, fs in sets.items():
        distil(name, fs, features, train, heads, rows, names)
    for name in sets:
        rows[name]["tau"] = taus.get(name, teacher.tau)
    if HALF in chosen:  # how much the data matter beside the rule: the shipped rule's labels of half the perturbations
        distil(HALF, subset(sets[SHIPPED], lambda k: k < args.augmentations // 2), features, train, heads, rows, names)

    drimdb_check(heads, rows, args.data, size, features)
    photos_val, records = ground_truth_records(heads, names, val, args.data, size, features)
    summary = summarise(records, list(heads))
    others = summarise([r for r in records if camera(r.photo) != "IDRiD"], list(heads))
    kinds = list(summary["per_kind"])
    for name, row in rows.items():
        keys = [f"{name} | seed {s}" for s in SEEDS]
        row["overall_by_seed"] = [summary["overall"][k]["auroc"] for k in keys]
        row["ranking_by_seed"] = [summary["ranking"][k] for k in keys]
        row["overall"] = float(np.mean(row["overall_by_seed"]))
        row["overall_other_cameras"] = float(np.mean([others["overall"][k]["auroc"] for k in keys]))
        row["ranking"] = float(np.mean(row["ranking_by_seed"]))
        row["per_kind"] = {kind: float(np.mean([summary["per_kind"][kind][k]["auroc"] for k in keys])) for kind in kinds}
        row["per_severity"] = {sev: float(np.mean([v[k]["auroc"] for k in keys])) for sev, v in summary["per_severity"].items()}
    stamped = stamp()
    for row in rows.values():
        row["run"] = stamped["date"]
    path = HERE / "results" / "teacher_rules.json"
    command = shlex.join(["python", "benchmarks/teacher_rules.py", *sys.argv[1:]])
    commands = [command]
    if args.rules and path.exists():  # rows of rules not run now stay as an earlier run gave them
        earlier = json.loads(path.read_text())
        commands = [*earlier.get("commands", [earlier["command"]]), command]
        rows = {**earlier["rows"], **rows}
    for name, row in rows.items():  # a row of a rule no longer in RULES keeps none and is no candidate
        row.pop("clean_fpr_loco", None)
        if name in fpr:
            row["clean_fpr_loco"] = fpr[name]
    base = rows[SHIPPED]
    estimator = fpr_estimator(rows)
    real = drimdb_trusted(rows)
    clahe = clahe_trusted(rows)
    for name, row in rows.items():
        row["candidate"] = bool(name not in (SHIPPED, HALF)
                                and row["overall"] - base["overall"] >= SHIP_RULE["mean_gain"]
                                and (not SHIP_RULE["worst_seed_over_shipped_median"]
                                     or min(row["overall_by_seed"]) > float(np.median(base["overall_by_seed"])))
                                and base["ranking"] - row["ranking"] <= SHIP_RULE["ranking_drop"]
                                and all(base["per_kind"][k] - v <= SHIP_RULE["kind_drop"] for k, v in row["per_kind"].items())
                                and (drimdb_ok(row, base) if real else
                                     "clean_fpr_loco" in row
                                     and row["clean_fpr_loco"]["mean"] - base["clean_fpr_loco"]["mean"]
                                     <= SHIP_RULE["clean_fpr_loco_over_shipped"])
                                and student_fpr_ok(row, base, estimator)
                                and (not clahe or clahe_ok(row, base))
                                and "overall_other_cameras" in row
                                and row["overall_other_cameras"] - base["overall_other_cameras"]
                                >= SHIP_RULE["mean_gain_other_cameras"])
    out = {"benchmark": "teacher_rules", "command": command, "commands": commands,
           "machine": stamped, "size": size, "features": features, "seeds": list(SEEDS), "ship_rule": SHIP_RULE, "held_out_rule": HELD_OUT_RULE,
           "validation_photos": sorted(photos_val), "generator": "synth", "judge_seconds": round(judge_s, 1),
           "noise_reference": NOISE_REFERENCE[0], "relative_noise_reference": RELATIVE_NOISE_REFERENCE[0],
           "student_clean_fpr_estimator": estimator,
           "drimdb_clause_in_force": real, "clahe_clause_in_force": clahe,
           "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    md = ["# Teacher rules judged by the students they teach", "",
          f"Each rule re-judges the same teacher network outputs of the {len(names)}-photo pool's perturbations; a head "
          f"is distilled from its labels on 4 of 5 photos from seeds {', '.join(map(str, SEEDS))}; the other "
          f"{len(photos_val)} photos are degraded by `synth` and the heads' maps scored against its masks (patch AUROC; "
          f"never `soft`, never the held-out photos). Means over the seeds. Commands, in order (`--rules` replaces "
          f"only the rows it names; each row's `run` in the JSON dates it): "
          + "; ".join(f"`{c}`" for c in commands) + ".", "",
          "| rule | mean label | overall AUROC (mean) | by seed | other cameras than IDRiD | ranking | " + " | ".join(kinds)
          + " | teacher clean FPR, cameras left out (mean; IDRiD / DRIVE / HRF / EyePACS / other) | student clean FPR, "
            "unseen photos (overall; DRIVE, HRF) | the same, thresholds from the reference photos | student clean FPR, "
            "DRIMDB-dev: Good cells flagged, AUROC Bad vs Good | CLAHE'd DRIMDB-dev Good: ungradable, cells flagged | candidate |",
          "|---|---|---|---|---|---|" + "---|" * len(kinds) + "---|---|---|---|---|---|"]
    md += [f"| {n} | {r['mean_label']:.3f} | {r['overall']:.4f} | {' / '.join(f'{x:.3f}' for x in r['overall_by_seed'])} | "
           + (f"{r['overall_other_cameras']:.4f}" if "overall_other_cameras" in r else "—") + f" | {r['ranking']:.3f} | "
           + " | ".join(f"{r['per_kind'][k]:.3f}" for k in kinds)
           + " | " + (f"{r['clean_fpr_loco']['mean']:.3f} (" + " / ".join(
               f"{r['clean_fpr_loco']['per_camera'].get(c, float('nan')):.3f}" for c in ("IDRiD", "DRIVE", "HRF", "EyePACS", "other"))
               + ")" if "clean_fpr_loco" in r else "—")
           + " | " + (f"{r['student_clean_fpr']['overall']:.3f} (DRIVE {r['student_clean_fpr']['per_camera'].get('DRIVE', float('nan')):.3f}, "
                      f"HRF {r['student_clean_fpr']['per_camera'].get('HRF', float('nan')):.3f})" if "student_clean_fpr" in r else "—")
           + " | " + (f"{r['student_clean_fpr_reference']['overall']:.3f} (DRIVE "
                      f"{r['student_clean_fpr_reference']['per_camera'].get('DRIVE', float('nan')):.3f}, HRF "
                      f"{r['student_clean_fpr_reference']['per_camera'].get('HRF', float('nan')):.3f})"
                      if "student_clean_fpr_reference" in r else "—")
           + " | " + (f"{r['drimdb']['good_flagged']:.3f}, {r['drimdb']['auroc']:.3f}" if "drimdb" in r else "—")
           + " | " + (f"{r['drimdb']['clahe_good_ungradable']:.3f}, {r['drimdb']['clahe_good_flagged']:.3f}"
                      if "clahe_good_ungradable" in r.get("drimdb", {}) else "—")
           + f" | {'yes' if r['candidate'] else 'no'} |"
           for n, r in rows.items()]
    md += ["", ("Teacher clean FPR, cameras left out: the photos most flagged (share of their cells; photos of "
                "EyePACS, the group of three, always shown):"), ""]
    md += [f"- {n}: " + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in sorted(
               r["clean_fpr_loco"]["per_photo"].items(), key=lambda kv: (camera(kv[0]) != "EyePACS", -kv[1]))[:6])
           for n, r in rows.items() if "per_photo" in r.get("clean_fpr_loco", {})]
    md += ["", (f"`{HALF}`: the shipped rule's labels of perturbations 0-{args.augmentations // 2 - 1} of each "
                "photo only (what the amount of data is worth beside the rule; never a candidate)."),
           "", (f"Noise-term rules: vessels fade from ramp[0] to ramp[1] × the clean pool's residual level "
                f"({NOISE_REFERENCE[0]:.3f} grey levels of mean |green − 3×3 median|), times the shipped exposure term "
                f"(or, where named, the disc-exempt or vignetting-aware one). Disc exempt: no washed-out ramp within "
                f"{DISC_RADIUS} R of the optic disc (`find_disc`). Vignetting: the level over FOV pixels only against "
                f"the clean pool's at the same eccentricity (by ring of ρ: "
                + " ".join(f"{v:.2f}" for v in VIGNETTING) + ")."),
           "", ("Tau: the shipped teacher's (" + f"{teacher.tau:.3f}" + ") unless a rule names its own: calibrated on the "
                "rule's anomalies of the pool's photos as they are, the 90th percentile of their pixels, each "
                "pixel alike (own) or each camera group alike (balanced). "
                + "; ".join(f"{n}: {r['tau']:.3f}" for n, r in rows.items() if RULES.get(n, {}).get(TAU) and "tau" in r) + "."),
           "", ("Source references: each perturbation judged against the vessel depth, Weber contrast (and, where "
                "named, noise level) of its own unperturbed photo, measured as calibration measures the pool's, "
                "instead of the pool's medians; camera references: pooled over its camera group's unperturbed "
                "photos. Teacher clean FPR: `clean_fpr`, the pool's photos as they are, "
                "tau and phi calibrated with each camera group left out, the share of its patches flagged. Student "
                "clean FPR (`student_clean_fpr`, rows run since it was added): each head's patch threshold from the "
                "training photos' unperturbed cells (upper 95 % bound of their 95th percentile), the share of the "
                "validation photos' unperturbed cells at or above it, mean over the seeds; beside it, the same with "
                "the threshold from the training photos judged good by eye only (`distill.reference_photos`), as the "
                f"shipped recipe sets it. The per-camera clause read `{estimator}` in this run (`fpr_estimator`). "
                f"DRIMDB-dev (`drimdb_check`, rows run since it was added): each head on the dataset's Good and Bad "
                f"photos as published, the share of the Good photos' cells at or above its reference-photo "
                f"threshold and the image AUROC Bad vs Good, means over the seeds; its clause "
                f"{'was in force and replaced the teacher-level camera-left-out clause' if real else 'was not in force (its controls did not both fail it): reported only'} "
                f"in this run (`drimdb_trusted`). CLAHE'd DRIMDB-dev Good (rows run since it was added): the "
                f"same Good photos CLAHE'd as real_photos.py does, the share scored ungradable (mean cell score "
                f"at or above the head's in-sample reference-photo gradable threshold) and of their cells "
                f"flagged; its clause (`clahe_ok`) "
                f"{'was in force' if clahe else 'was not in force (its control did not fail it, or lacks it): reported only'} "
                f"in this run (`clahe_trusted`)."),
           "", (f"Relative noise term: the residual level over the photo's contrast scale (`relative_noise_level`: "
                f"the 90th percentile of the σ-{SCALE_SIGMA:g} px smoothed photo's vessel depth, {SCALE_KERNEL}-px "
                f"black-hat), against the clean pool's median "
                + (f"({RELATIVE_NOISE_REFERENCE[0]:.4f})" if RELATIVE_NOISE_REFERENCE else "")
                + "; joint: the smaller of the two levels, each over its clean pool median (`joint_noise_level`)."),
           "", (f"Ship rule, fixed before the run (its `kind_drop` clause added 2026-11-30, before the noise-term "
                f"rules' first result, its `clean_fpr_loco_over_shipped` clause before the source-reference rules', "
                f"its `student_clean_fpr_*` clauses before the TAU rules'; they apply to every row): {SHIP_RULE}.")]
    (HERE / "results" / "teacher_rules.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    from student_variants import pool_arguments

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    ap.add_argument("--rules", nargs="+", metavar="NAME",
                    help="only these rules (the shipped one always runs); their rows replace those of an earlier run "
                         "in results/teacher_rules.json, the others stay")
    main(ap.parse_args())
