"""The GPU prior's round trip (maps → train → fp16 parts → assemble), run here on the CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from efiqa.train import prior_gpu, teacher  # noqa: E402


def _maps(n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:teacher.MAP_SIZE, 0:teacher.MAP_SIZE]
    fov = (yy - 128) ** 2 + (xx - 128) ** 2 < 120 ** 2
    return [(np.where(fov, rng.random(fov.shape) ** 4, 0).astype(np.float32), fov) for _ in range(n)]


def test_maps_round_trip_at_half_precision(tmp_path):
    maps = _maps()
    prior_gpu.save_maps(["a", "b", "c"], maps, tmp_path / "m.npz")
    names, back = prior_gpu.load_maps(tmp_path / "m.npz")
    assert names == ["a", "b", "c"]
    for (m, f), (m2, f2) in zip(maps, back):
        assert np.array_equal(f, f2) and f2.dtype == bool
        assert np.abs(m - m2).max() <= 1e-3 and m2.dtype == np.float32


def test_schedule_is_torchs_one_cycle():
    steps, peak = 200, 1e-3
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=steps, pct_start=0.05)
    for step in range(steps):
        assert prior_gpu._lr(step, steps, peak) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-12)
        opt.step()
        sched.step()


def test_train_parts_assemble_to_the_trained_prior(tmp_path, monkeypatch):
    monkeypatch.setattr(prior_gpu, "PART_BYTES", 20_000)  # several parts from a tiny prior
    prior_gpu.save_maps(["a", "b", "c"], _maps(), tmp_path / "m.npz")
    log = prior_gpu.train(tmp_path / "m.npz", tmp_path / "out", steps=3, base=2, batch=2, workers=0, device="cpu")
    assert log["steps"] == 3 and log["base"] == 2 and len(log["weights"]["parts"]) > 1
    assert json.loads((tmp_path / "out" / "prior_log.json").read_text())["weights"] == log["weights"]
    back = prior_gpu.assemble(tmp_path / "out", tmp_path / "inpainter.pt")
    model = teacher.load_model(tmp_path / "inpainter.pt")
    assert int(model.net.down[0][0].weight.shape[0]) == 2 and back["base"] == 2
    part = tmp_path / "out" / log["weights"]["parts"][0]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(ValueError, match="sha256"):
        prior_gpu.assemble(tmp_path / "out", tmp_path / "again.pt")
