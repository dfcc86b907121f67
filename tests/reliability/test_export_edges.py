"""Issue 24 items 8, 10 and 14 (export side): an output that cannot be written is
one line naming it (before the work where that can be known), a full disk blames
the output and not the checkpoint, and what was at the output before is kept."""

from __future__ import annotations

import pytest
from reliability_helpers import error_line, run_module, small_disk


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from affect.labels import EXPRESSIONS
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained="none", input_size=64, hidden=32).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", model=model,
                           spec=spec_for(model, list(EXPRESSIONS)), model_args=model_args(model, 32, 0.3))


def test_an_output_under_proc_is_one_line_before_the_work(ckpt):
    done = run_module("export", ["onnx", ckpt, "-o", "/proc/x.onnx"])
    line = error_line(done.stderr)
    assert done.returncode == 1 and "/proc/x.onnx: output folder /proc is not writable" in line
    assert "parity" not in done.stderr  # refused before the export, not after it


def test_a_full_disk_blames_the_output_keeps_the_old_file_and_leaves_no_partial(ckpt, tmp_path):
    with small_disk(tmp_path / "disk", 64) as disk:
        old = disk / "m.onnx"
        old.write_bytes(b"the previous export")
        done = run_module("export", ["onnx", ckpt, "-o", old])
        line = error_line(done.stderr)
        assert done.returncode == 1 and f"{old}: cannot write it (No space left on device)" in line
        assert str(ckpt) not in line
        assert old.read_bytes() == b"the previous export"
        assert [p.name for p in disk.iterdir()] == ["m.onnx"]
