from __future__ import annotations

import importlib.util
import json
import shlex

import numpy as np
import onnx
import pytest

from affect.preprocess import prepare_batch
from affect.spec import ModelSpec, read_json_spec
from export.__main__ import main
from export.bench import BenchOptions, run_bench, write_tables
from export.common import ExportError
from export.faces import load_faces
from export.formats import FORMATS, format_for_path, run_format
from export.tensorrt_engine import (
    EngineOptions,
    TensorRTUnavailable,
    build_engine,
    calibration_batches,
    engine_spec_path,
    profile_shapes,
    trtexec_command,
    write_engine_spec,
)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _spec(path) -> ModelSpec:
    return ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def test_profile_covers_batch_1_to_n_at_the_spec_size():
    spec = ModelSpec(input_size=96)
    shapes = profile_shapes(spec, EngineOptions(max_batch=16))
    assert shapes == {"min": (1, 3, 96, 96), "opt": (9, 3, 96, 96), "max": (16, 3, 96, 96)}
    with pytest.raises(ExportError, match="min <= opt <= max"):
        profile_shapes(spec, EngineOptions(max_batch=4, opt_batch=8))


def test_trtexec_command_matches_the_engine_options(tmp_path):
    spec = ModelSpec(input_size=112)
    cmd = trtexec_command(tmp_path / "m.onnx", tmp_path / "m.engine", spec,
                          EngineOptions(precision="int8", max_batch=4, workspace_mb=512))
    args = shlex.split(cmd)
    assert args[0] == "trtexec"
    assert "--int8" in args and f"--calib={tmp_path / 'm.engine.calib.cache'}" in args
    assert "--minShapes=image:1x3x112x112" in args and "--maxShapes=image:4x3x112x112" in args
    assert f"--timingCacheFile={tmp_path / 'm.engine.timing.cache'}" in args
    fp16 = shlex.split(trtexec_command("m.onnx", "m.engine", spec, EngineOptions(precision="fp16")))
    assert "--fp16" in fp16 and "--int8" not in fp16
    with pytest.raises(ExportError, match="unknown precision"):
        trtexec_command("m.onnx", "m.engine", spec, EngineOptions(precision="int4"))


def test_calibration_batches_are_full_and_preprocessed_like_runtime(affectnet_root):
    spec = ModelSpec(input_size=64, mean=[0.5] * 3, std=[0.5] * 3)
    faces = load_faces(affectnet_root, limit=20)
    got = calibration_batches(faces, spec, 8)
    assert [b.shape for b in got] == [(8, 3, 64, 64)] * 2  # the partial third batch is dropped
    np.testing.assert_array_equal(got[1], prepare_batch(faces.images[8:16], spec))
    few = load_faces(affectnet_root, limit=3)
    assert [b.shape[0] for b in calibration_batches(few, spec, 8)] == [8]


def test_engine_spec_json_round_trips(tmp_path):
    spec = ModelSpec(input_size=80, backbone="small_cnn", au_names=["AU12"])
    path = write_engine_spec(tmp_path / "model.engine", spec)
    assert path == engine_spec_path(tmp_path / "model.engine") == tmp_path / "model.engine.json"
    assert read_json_spec(str(path)) == spec


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the missing-TensorRT message cannot be shown")
def test_tensorrt_missing_is_one_line_and_writes_nothing(tmp_path, small_onnx, capsys):
    out = tmp_path / "m.engine"
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed") as err:
        build_engine(small_onnx, out)
    assert "\n" not in str(err.value)
    assert "trtexec --onnx=" in capsys.readouterr().out
    assert not out.exists() and not engine_spec_path(out).exists()
    assert main(["tensorrt", str(small_onnx), "-o", str(out), "--fp16"]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("error: TensorRT is not installed")


@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and an NVIDIA GPU (pip install .[tensorrt])")
def test_tensorrt_engine_builds_with_spec(tmp_path, small_onnx):
    out = build_engine(small_onnx, tmp_path / "m.engine", EngineOptions(precision="fp16", max_batch=4))
    assert out.stat().st_size > 0 and read_json_spec(str(engine_spec_path(out))) == _spec(small_onnx)


def test_format_table_names_files_and_logs_size(tmp_path, small_onnx, caplog):
    assert {f.argument for f in FORMATS} >= {"onnx", "int8", "fp16", "tensorrt"}
    assert format_for_path("x/model.int8.onnx").name == "ONNX INT8"
    assert format_for_path("model.onnx").name == "ONNX"
    assert format_for_path("best.engine").needs_gpu
    caplog.set_level("INFO", logger="export")
    out = run_format("fp16", small_onnx, tmp_path / "m.fp16.onnx")
    assert "export ONNX FP16: success" in caplog.text and "MB)" in caplog.text and str(out) in caplog.text
    with pytest.raises(ExportError):
        run_format("fp16", tmp_path / "missing.onnx")
    assert "export ONNX FP16: failure" in caplog.text


def test_bench_table_has_a_row_per_model_and_batch(tmp_path, small_onnx, affectnet_root):
    ckpt = small_onnx.with_suffix(".pt")
    options = BenchOptions(data=affectnet_root, batch_sizes=(1, 4), threads=1, warmup=1, min_iters=3,
                           min_seconds=0, limit=24)
    rows = run_bench([ckpt, small_onnx], options)
    assert [(r.backend, r.batch) for r in rows] == [("PyTorch eager", 1), ("PyTorch eager", 4),
                                                    ("ORT FP32", 1), ("ORT FP32", 4)]
    for r in rows:
        assert r.p50_ms > 0 and r.p95_ms >= r.p50_ms and r.iters >= 3 and r.n_eval == 24
        assert 0 <= r.accuracy <= 1 and -1 <= r.valence_ccc <= 1
    # Same weights, so PyTorch and ORT score the same.
    assert rows[0].accuracy == pytest.approx(rows[2].accuracy)
    assert rows[2].speedup_vs_ort_fp32 == pytest.approx(1.0)
    md = write_tables(rows, tmp_path / "bench", options)
    assert md.count("\n| ") == 4 and "Threads: 1" in md
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["environment"]["threads"] == 1 and len(data["rows"]) == 4


def test_cli_bad_inputs_print_one_line_and_exit_nonzero(tmp_path, small_onnx, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00" * 64)
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(str(small_onnx))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    cases = [
        (["onnx", str(bad)], "not a readable"),
        (["int8", str(bare), "--data", str(tmp_path)], "no affect.* metadata"),
        (["fp16", str(small_onnx), "-o", str(bad / "x.onnx")], "cannot create output folder"),
        (["bench", str(tmp_path / "nothing.onnx")], "not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "broken.onnx").exists()


def test_relative_columns_compare_within_a_model_family():
    from export.bench import BenchRow, add_relative

    def row(model, family, backend, throughput, accuracy):
        return BenchRow(model=model, backend=backend, runtime="", batch=1, threads=2, p50_ms=1.0, p95_ms=1.0,
                        throughput=throughput, iters=10, size_mb=1.0, model_family=family, accuracy=accuracy)

    rows = [row("a.onnx", "mobilenet_v2 160px", "ORT FP32", 600.0, 0.45),
            row("a.int8.onnx", "mobilenet_v2 160px", "ORT INT8", 1500.0, 0.43),
            row("b.onnx", "efficientnet_lite0 160px", "ORT FP32", 400.0, 0.40),
            row("b.int8.onnx", "efficientnet_lite0 160px", "ORT INT8", 800.0, 0.39)]
    add_relative(rows)
    assert [round(r.speedup_vs_ort_fp32, 2) for r in rows] == [1.0, 2.5, 1.0, 2.0]
    assert [round(r.accuracy_delta_points, 1) for r in rows] == [0.0, -2.0, 0.0, -1.0]
