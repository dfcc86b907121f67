"""The README's Python example runs as written (on the shared clip)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(monkeypatch, hamilton_clip, face_model_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python example"
    code = blocks[0].replace('"video.mp4"', repr(str(hamilton_clip)))
    code = code.replace('"model.int8.onnx"', repr(str(REPO / "realtime" / "models" / "affectcam_default.int8.onnx")))
    monkeypatch.setenv("AFFECTCAM_FACE_MODEL", str(face_model_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    rows = [line.split() for line in out.getvalue().splitlines()]
    assert len(rows) > 100  # one line per face per frame over the clip
    assert all(len(r) == 5 and r[0].isdigit() for r in rows)


def test_readme_per_frame_and_reader_example_runs(monkeypatch, hamilton_clip, face_model_path):
    import cv2

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    cap = cv2.VideoCapture(str(hamilton_clip))
    image = [cap.read()[1] for _ in range(121)][120]  # one singer, face about (204, 50, 93, 93)
    cap.release()
    monkeypatch.setenv("AFFECTCAM_FACE_MODEL", str(face_model_path))
    scope = {"image_bgr": image, "face_rgb": cv2.cvtColor(image[30:160, 185:320], cv2.COLOR_BGR2RGB)}
    exec(compile(blocks[1], "README.md", "exec"), scope)
    assert len(scope["result"].faces) == 1
    reading = scope["reading"]
    assert reading.expression in reading.labels and abs(sum(reading.probabilities) - 1) < 1e-6
