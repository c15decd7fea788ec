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


def test_schedule_is_torchs_one_cycle_of_rate_and_momentum():
    steps, peak = 200, 1e-3
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=steps, pct_start=0.05)
    for step in range(steps):
        rate, beta1 = prior_gpu._schedule(step, steps, peak)
        assert rate == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-12)
        assert beta1 == pytest.approx(opt.param_groups[0]["betas"][0], rel=1e-9)
        opt.step()
        sched.step()


def test_workers_draw_different_samples_at_the_shared_progress(monkeypatch):
    import multiprocessing as mp

    def fake(vmap, fov, rng, progress):
        a = np.full((2, 2), rng.random(), np.float32)
        return a, np.full((2, 2), progress, np.float32), np.ones((2, 2), bool)

    monkeypatch.setattr(prior_gpu.teacher, "training_sample", fake)
    progress = mp.get_context("fork").Value("d", 0.25, lock=False)
    loader = torch.utils.data.DataLoader(prior_gpu.Samples(_maps(1), 0, progress), batch_size=1, num_workers=2,
                                         multiprocessing_context="fork")
    drawn = [b for _, b in zip(range(4), loader)]
    firsts = {float(x[0, 0, 0, 0]) for x, _, _ in drawn}
    assert len(firsts) == 4  # two workers, two generators: no sample drawn twice
    assert all(float(v[0, 0, 0, 0]) == 0.25 for _, v, _ in drawn)


def test_train_parts_assemble_to_the_trained_prior(tmp_path, monkeypatch):
    monkeypatch.setattr(prior_gpu, "PART_BYTES", 20_000)  # several parts from a tiny prior
    prior_gpu.save_maps(["a", "b", "c"], _maps(), tmp_path / "m.npz")
    with pytest.raises(ValueError):
        prior_gpu.train(tmp_path / "m.npz", tmp_path / "out", base=2, workers=0, device="cpu")
    # at rate 0 the convolutions keep their initial weights: what comes back is exactly those, in fp16
    log = prior_gpu.train(tmp_path / "m.npz", tmp_path / "out", steps=3, base=2, batch=2, lr=0.0, workers=0,
                          device="cpu")
    assert log["steps"] == 3 and log["base"] == 2 and len(log["weights"]["parts"]) > 1
    assert json.loads((tmp_path / "out" / "prior_log.json").read_text())["weights"] == log["weights"]
    prior_gpu.assemble(tmp_path / "out", tmp_path / "inpainter.pt", tmp_path / "m.npz")
    got = teacher.load_model(tmp_path / "inpainter.pt").state_dict()
    torch.manual_seed(0)
    initial = teacher.build_model(2).state_dict()
    convs = [k for k in initial if k.endswith("weight") and initial[k].dim() == 4]
    assert convs and all(torch.equal(got[k], initial[k].half().float()) for k in convs)
    trained = prior_gpu.train(tmp_path / "m.npz", tmp_path / "moved", steps=3, base=2, batch=2, workers=0, device="cpu")
    moved = prior_gpu.assemble(tmp_path / "moved", tmp_path / "moved.pt")
    assert moved["weights"] == trained["weights"]
    assert not torch.equal(teacher.load_model(tmp_path / "moved.pt").state_dict()[convs[0]], got[convs[0]])
    with pytest.raises(ValueError, match="not the npz"):
        prior_gpu.assemble(tmp_path / "out", tmp_path / "x.pt", tmp_path / "moved" / "prior_log.json")
    part = tmp_path / "out" / log["weights"]["parts"][0]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(ValueError, match="sha256"):
        prior_gpu.assemble(tmp_path / "out", tmp_path / "again.pt")


def test_cli_reports_a_missing_run_in_one_line(tmp_path, capsys):
    assert prior_gpu.main(["assemble", str(tmp_path / "absent"), str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prior_gpu assemble:") and "prior_log.json" in err and "\n" not in err
