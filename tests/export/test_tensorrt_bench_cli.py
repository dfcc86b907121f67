from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

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
    assert "export ONNX FP16: success" in caplog.text and str(out) in caplog.text
    assert re.search(r"\(\d+\.\d+ (kB|MB)\)", caplog.text)
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


def test_the_format_table_names_default_outputs_and_builds_the_cli():
    from export.__main__ import get_args_parser
    from export.formats import exportable, format_by_argument

    outputs = {f.argument: f.default_output("runs/x/checkpoint.pt" if f.source == "-" else "runs/x/m.onnx").name
               for f in exportable()}
    assert outputs == {"onnx": "checkpoint.onnx", "int8": "m.int8.onnx", "fp16": "m.fp16.onnx", "tensorrt": "m.engine"}
    assert format_by_argument("tensorrt").default_output("m.int8.onnx").name == "m.int8.engine"
    parser = get_args_parser()
    for fmt in exportable():  # every row is a sub-command that parses into its function's arguments
        source = "m.pt" if fmt.source == "-" else "m.onnx"
        argv = [fmt.argument, source, "-o", "out", *(["--data", "d"] if fmt.argument == "int8" else [])]
        args, _ = fmt.call_arguments(parser.parse_args(argv))
        given = args[0][0] if isinstance(args[0], list) else args[0]  # onnx takes a list (ensembles)
        assert (given, args[1 + (fmt.argument == "int8")]) == (Path(source), Path("out")), fmt.argument


def test_bench_all_formats_walks_the_table_with_one_status_row_each(tmp_path, make_ckpt, affectnet_root, capsys):
    from export.bench import cuda_available

    ckpt = make_ckpt(tmp_path / "run" / "checkpoint.pt", "small_cnn", size=64)
    out = tmp_path / "bench"
    argv = ["bench", str(ckpt), "--all-formats", "--data", str(affectnet_root), "--limit", "12", "--batch", "1",
            "--threads", "1", "--warmup", "1", "--min-iters", "2", "--min-seconds", "0", "-o", str(out)]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    statuses = {s["format"]: s for s in doc["formats"]}
    assert list(statuses) == [f.name for f in FORMATS]
    made = [s["file"] for s in doc["formats"] if s["status"] == "ok"]
    assert {r["model"] for r in doc["rows"]} == set(made)  # every file made is benched, once per batch
    assert statuses["ONNX INT8"]["status"] == "ok" and statuses["ONNX INT8"]["file"].endswith("checkpoint.int8.onnx")
    assert all(str(tmp_path / "bench-formats") in f for f in made[1:])  # exports beside the table, not the run
    if not cuda_available():
        assert statuses["TensorRT"] == {"format": "TensorRT", "status": "skipped", "file": None,
                                        "detail": "needs a CUDA GPU"}
    assert "| ONNX FP16 | ok |" in capsys.readouterr().out
    rows = {r["backend"]: r for r in doc["rows"]}
    assert rows["ORT FP32"]["accuracy"] == pytest.approx(rows["PyTorch eager"]["accuracy"])


def test_bench_all_formats_without_data_skips_int8_and_wants_one_checkpoint(tmp_path, make_ckpt, small_onnx, capsys):
    from export.bench import BenchOptions, export_all_formats

    ckpt = make_ckpt(tmp_path / "checkpoint.pt", "small_cnn", size=64)
    files, statuses = export_all_formats(ckpt, tmp_path / "made", BenchOptions())
    by_name = {s.format: s for s in statuses}
    assert by_name["ONNX INT8"].status == "skipped" and "--data" in by_name["ONNX INT8"].detail
    assert [f.name for f in files][:2] == ["checkpoint.pt", "checkpoint.onnx"]
    assert main(["bench", str(ckpt), str(ckpt), "--all-formats"]) == 1
    assert "takes one checkpoint.pt" in capsys.readouterr().err
    with pytest.raises(ExportError, match="starts from a PyTorch checkpoint"):
        export_all_formats(small_onnx, tmp_path / "made2", BenchOptions())
