"""A plain `pip install affectcam` (no `train` extra) has no PyTorch: the camera
and the dashboard still work, and the commands that need torch say how to get it.

Each check runs in a fresh interpreter where importing torch, torchvision or
tensorboard fails the way it does when they are not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent("""
    import importlib.abc, runpy, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in {"torch", "torchvision", "tensorboard"}:
                raise ModuleNotFoundError(f"No module named {top!r}", name=top)
            return None

    sys.meta_path.insert(0, NoTorch())
""")


def run_without_torch(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "no_torch.py"
    script.write_text(BLOCKER + textwrap.dedent(body))
    # PYTHONPATH: this checkout's code, not an installed copy of the package.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def run_module(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    return run_without_torch(tmp_path, f"""
        sys.argv = [{module!r}, *{list(args)!r}]
        try:
            runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
        finally:
            assert "torch" not in sys.modules
    """)


def test_the_camera_runs_the_packaged_model_without_torch(tmp_path, hamilton_clip, face_model_path):
    csv = tmp_path / "faces.csv"
    proc = run_module(tmp_path, "realtime.cam", "--source", str(hamilton_clip), "--headless",
                      "--face-model", str(face_model_path), "--max-frames", "120", "--csv", str(csv))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = csv.read_text().splitlines()
    assert len(rows) > 10  # faces appear from about frame 82


def test_the_benchmark_reads_a_dataset_folder_without_torch(tmp_path, affectnet_root, face_model_path):
    """`export bench --data DIR` reads AffectNet's layout with affect.datasets' loaders and
    the images with affect.images: neither may pull in torch."""
    model = REPO / "realtime" / "models" / "affectcam_default.int8.onnx"
    proc = run_module(tmp_path, "export", "bench", str(model), "--data", str(affectnet_root), "--limit", "6",
                      "--batch", "1", "--warmup", "1", "--min-iters", "2", "--min-seconds", "0",
                      "--face-model", str(face_model_path), "-o", str(tmp_path / "bench"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((tmp_path / "bench.json").read_text())["rows"][0]
    assert row["backend"] == "ORT INT8" and row["n_eval"] == 6 and 0 <= row["accuracy"] <= 1


def test_calibrate_fits_an_onnx_file_without_torch_or_the_training_code(tmp_path, affectnet_root):
    """`export calibrate` reads the run's validation faces with affect.datasets and runs the
    file through inference: no torch, and no module of the `train` room, is imported."""
    import yaml

    from affect.datasets.loaders import load_dataset

    entry = {"type": "affectnet", "root": str(affectnet_root), "limit": 12, "name": "affectnet"}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"datasets": [entry]}}))
    val = [s.path for s in load_dataset(entry).samples]
    (run / "splits.json").write_text(json.dumps({"train": [], "val": val, "test": []}))
    out = tmp_path / "calibrated.onnx"
    proc = run_without_torch(tmp_path, f"""
        from export.__main__ import main
        code = main(["calibrate", {str(REPO / "realtime" / "models" / "affectcam_default.onnx")!r},
                     "--run-dir", {str(run)!r}, "-o", {str(out)!r}])
        assert code == 0, code
        assert "torch" not in sys.modules
        assert not [m for m in sys.modules if m.split(".")[0] == "train"], sorted(sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out} (affect.temperature " in proc.stdout
    assert "fitted on the val parts: affectnet (12)" in proc.stdout


@pytest.mark.parametrize("command", [
    ["train", "fit", "--config", "configs/default.yaml"],
    ["export", "onnx", "runs/none/checkpoint.pt", "-o", "model.onnx"],
])
def test_commands_that_need_torch_say_how_to_install_it(tmp_path, command):
    proc = run_module(tmp_path, command[0], *command[1:])
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: python -m {command[0]} {command[1]} needs torch, which is not installed: "
                     "pip install 'affectcam[train]'"]


def test_the_dashboard_renders_without_torch(tmp_path):
    proc = run_without_torch(tmp_path, f"""
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(REPO / "streamlit_app.py")!r}, default_timeout=120).run()
        assert not at.exception, at.exception
        assert "torch" not in sys.modules
        print("rendered", len(at.main.children))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rendered" in proc.stdout
