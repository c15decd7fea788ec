import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from efiqa import __version__
from efiqa.cli import main

from .test_assess import JSON_KEYS
from .conftest import synthetic_fundus


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_and_exit_zero(capsys, retina_file):
    code, out, err = run(capsys, "assess", "--json", str(retina_file))
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert set(rec) == JSON_KEYS and rec["path"] == str(retina_file)
    assert err == ""


def test_partial_failure_exits_two_and_reports_each(capsys, retina_file, tmp_path):
    bad = tmp_path / "fake.png"
    bad.write_text("not an image")
    empty_dir = tmp_path / "nothing_here"
    empty_dir.mkdir()
    code, out, err = run(capsys, "assess", "--json", str(retina_file), str(bad), str(tmp_path / "missing.jpg"),
                         str(empty_dir))
    assert code == 2
    recs = [json.loads(line) for line in out.strip().splitlines()]
    assert len(recs) == 4
    errors = {r["path"]: r["error"] for r in recs if "error" in r}
    assert set(errors) == {str(bad), str(tmp_path / "missing.jpg"), str(empty_dir)}
    for e in errors.values():
        assert set(e) == {"type", "message"} and e["type"] == "ImageReadError"
    ok = [r for r in recs if "error" not in r]
    assert len(ok) == 1 and set(ok[0]) == JSON_KEYS
    assert "Traceback" not in err and str(bad) in err


def test_folder_walk_and_out_dir(capsys, tmp_path):
    src = tmp_path / "photos"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    cv2.imwrite(str(src / "a" / "eye.png"), synthetic_fundus())
    cv2.imwrite(str(src / "b" / "eye.jpg"), synthetic_fundus(seed=1))
    (src / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "assess", str(src), "--out", str(out))
    assert code == 0
    assert len(stdout.strip().splitlines()) == 2
    names = sorted(p.name for p in out.iterdir())
    assert names == ["eye.json", "eye_1.json", "eye_1_overlay.png", "eye_overlay.png"]  # stems kept apart
    rec = json.loads((out / "eye.json").read_text())
    assert set(rec) == JSON_KEYS
    assert cv2.imread(str(out / "eye_overlay.png")).shape[2] == 3


def test_not_fundus_is_reported(capsys, tmp_path):
    path = tmp_path / "black.png"
    cv2.imwrite(str(path), np.zeros((400, 400, 3), np.uint8))
    code, out, err = run(capsys, "assess", "--json", str(path))
    assert code == 2
    rec = json.loads(out)
    assert rec["error"]["type"] == "NotFundusError" and "black" in rec["error"]["message"]


def test_threshold_flag(capsys, retina_file):
    _, out, _ = run(capsys, "assess", "--json", "--threshold", "1.0", str(retina_file))
    assert json.loads(out)["gradable"] is True
    code, _, err = run(capsys, "assess", "--threshold", "3", str(retina_file))
    assert code == 1 and "threshold" in err


def test_usage_errors_exit_one(capsys):
    assert run(capsys, "assess")[0] == 1
    assert run(capsys, "assess", "--backend", "cuda", "x.jpg")[0] == 1
    assert run(capsys)[0] == 1


def test_bad_model_exits_one(capsys, tmp_path, retina_file):
    code, _, err = run(capsys, "assess", "--model", str(tmp_path), str(retina_file))
    assert code == 1 and "manifest.json missing" in err and "Traceback" not in err


def test_info_prints_manifest(capsys):
    code, out, _ = run(capsys, "info")
    doc = json.loads(out)
    assert code == 0 and doc["format_version"] == 2 and doc["outputs"] == ["map", "score"]


def test_version_and_help_via_entry_point():
    out = subprocess.run([sys.executable, "-m", "efiqa", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"efiqa {__version__}"
    out = subprocess.run([sys.executable, "-m", "efiqa", "assess", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--json" in out.stdout


BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'tensorrt', 'tensorrt_rtx', 'pycuda', 'onnx', 'skimage'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
from efiqa.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorrt', 'pycuda')]
if sys.argv[1:2] == ['assess']:
    assert not [m for m in sys.modules if m.startswith('efiqa.eval')], 'the runtime imported the evaluation package'
sys.exit(code)
"""


def test_runtime_needs_no_torch(retina_file, tmp_path):
    """The whole assess path runs with torch, tensorrt, pycuda and onnx unimportable."""
    out = subprocess.run([sys.executable, "-c", BLOCKER, "assess", "--json", str(retina_file), "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == JSON_KEYS
    assert (tmp_path / "retina_overlay.png").is_file()


@pytest.mark.parametrize("argv, extra", [
    (["build", "--precision", "fp16", "--out", "{tmp}/e.engine"], "efiqa[rtx]"),
    (["verify", "--precision", "fp16", "--images", "{img}", "--out", "{tmp}/v"], "efiqa[build]"),
    (["train", "student", "--out", "{tmp}/s"], "efiqa[train,build]"),
    (["train", "vessels", "--dir", "{tmp}/t"], "efiqa[train,build]"),
    (["train", "teacher", "--dir", "{tmp}/t"], "efiqa[train,build]"),
    (["train", "prior", "maps", "{tmp}/m.npz"], "efiqa[train,build]"),
    (["export", "--out", "{tmp}/b"], "efiqa[train,build]"),
    (["teacher", "{img}"], "efiqa[train,build]"),
])
def test_toolchain_commands_in_a_runtime_only_install_exit_3_in_one_line(argv, extra, retina_file, tmp_path):
    """torch, onnx and every TensorRT unimportable, as after a plain 'pip install efiqa'."""
    argv = [a.format(tmp=tmp_path, img=retina_file) for a in argv]
    out = subprocess.run([sys.executable, "-c", BLOCKER, *argv], capture_output=True, text=True)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 3 and len(lines) == 1, out.stderr
    assert lines[0].startswith("efiqa: error:") and extra in lines[0] and "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_batch_size_is_a_usage_error(value, capsys, retina_file):
    assert main(["assess", str(retina_file), "--batch-size", value]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "--batch-size" in captured.err


def test_bench_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["bench", "--frames", "3", "--warmup", "1", "--batch", "2", "--no-cold-start",
                 "--json", str(out)]) == 0
    run = json.loads(out.read_text())
    assert run["schema"] == "efiqa-bench/1" and run["results"]["frames"] == 3
    assert "p50" in capsys.readouterr().out  # the Markdown summary
    assert main(["bench", "compare", str(out), str(out)]) == 0
    assert "1.00" in capsys.readouterr().out


def test_an_unexpected_failure_is_one_line_not_a_traceback(monkeypatch, capsys, retina_file):
    def boom(*a, **k):
        raise OSError("disk vanished\nsecond line")

    monkeypatch.setattr("efiqa.assessor.QualityAssessor.iter_batch", boom)
    assert main(["assess", str(retina_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error in 'assess': OSError: disk vanished" in err[0]
    monkeypatch.setenv("EFIQA_DEBUG", "1")
    with pytest.raises(OSError):
        main(["assess", str(retina_file)])


def test_teacher_json_stdout_is_only_json(capsys, retina_file, tmp_path):
    pytest.importorskip("torch")
    missing = tmp_path / "missing.png"
    assert main(["teacher", str(retina_file), str(missing), "--json"]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]  # every stdout line is a JSON object
    assert len(records) == 2 and "score" in records[0] and records[1]["error"]["type"] == "ImageReadError"
