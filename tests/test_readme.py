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
