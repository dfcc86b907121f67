"""Fixtures for the dashboard tests: a model file, a recording and an eval
directory, each from its real producer when that room has landed.

Producers and their stand-ins:
- model: a tiny contract-conforming ONNX graph built here with onnx.helper and
  the spec in its metadata (ModelSpec.to_metadata); `python -m export onnx`
  writes the same kind of file from a checkpoint.
- recording: realtime.Pipeline (its CSV sink) on the shared clip, 120 frames;
  without ../shared a stand-in in the documented format (affect.recording).
- eval dir: train.evaluate.evaluate on 48 shared AffectNet images; without
  ../shared a stand-in with the same files (metrics.json from
  affect.metrics.compute_metrics, plots from train.report).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from affect.labels import EXPRESSIONS
from affect.recording import FaceRow, write_csv_header
from affect.spec import ModelSpec

SHARED = Path(os.environ.get("AFFECTCAM_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
CLIP_FRAMES = 120  # the clip's first face appears at about frame 82
EVAL_IMAGES = 48
MODEL_SIZE = 64  # the tiny model's input side: small keeps the pipeline fast on 2 shared cores


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def realtime_pipeline_ready() -> bool:
    if not has_module("realtime"):
        return False
    import realtime

    return hasattr(realtime, "Pipeline") and hasattr(realtime, "PipelineOptions")


def write_tiny_onnx(path: Path, spec: ModelSpec | None = None, with_metadata: bool = True) -> Path:
    """image [N,3,S,S] → mean colour → linear heads: contract names and shapes, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = spec or ModelSpec(input_size=MODEL_SIZE, backbone="tiny-test", trained_on="nothing (test fixture)")
    rng = np.random.default_rng(0)
    c, k = len(spec.labels), 16
    # A random 8×8 patch filter bank, so the outputs move with the face (a plot of
    # constant predictions would test, and show, little).
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (k, 3, 8, 8)).astype(np.float32), "w_conv"),
             numpy_helper.from_array(rng.normal(0, 0.5, (k, c)).astype(np.float32), "w_expr"),
             numpy_helper.from_array(np.zeros(c, np.float32), "b_expr"),
             numpy_helper.from_array(rng.normal(0, 0.2, (k, 2)).astype(np.float32), "w_va"),
             numpy_helper.from_array(np.zeros(2, np.float32), "b_va")]
    nodes = [helper.make_node("Conv", ["image", "w_conv"], ["conv"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["feat"]),
             helper.make_node("Sub", ["feat", "feat_mean"], ["shifted"]),
             helper.make_node("Mul", ["shifted", "feat_scale"], ["centred"]),
             helper.make_node("Gemm", ["centred", "w_expr", "b_expr"], ["expression"]),
             helper.make_node("Gemm", ["centred", "w_va", "b_va"], ["va_raw"]),
             helper.make_node("Tanh", ["va_raw"], ["valence_arousal"])]
    mean, scale = _feature_stats(inits[0], spec)
    inits += [numpy_helper.from_array(mean, "feat_mean"), numpy_helper.from_array(scale, "feat_scale")]
    s = spec.input_size
    graph = helper.make_graph(
        nodes, "tiny_affect",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, s, s])],
        [helper.make_tensor_value_info("expression", TensorProto.FLOAT, ["N", c]),
         helper.make_tensor_value_info("valence_arousal", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        for key, value in spec.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _feature_stats(w_conv, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1/std of the patch-filter responses over a few real faces (0 and 1
    without ../shared), so the heads see standardised features and the
    predictions spread over the plane instead of saturating."""
    from onnx import numpy_helper

    from affect.preprocess import prepare_batch

    w = numpy_helper.to_array(w_conv)
    images = sorted((SHARED / "data" / "affectnet" / "images").glob("*.jpg"))[:32]
    if not images:
        return np.zeros(w.shape[0], np.float32), np.ones(w.shape[0], np.float32)
    from PIL import Image

    batch = prepare_batch([np.asarray(Image.open(p).convert("RGB")) for p in images], spec)  # N,3,S,S
    n, _, s, _ = batch.shape
    patches = batch.reshape(n, 3, s // 8, 8, s // 8, 8).transpose(0, 2, 4, 1, 3, 5).reshape(n, -1, 3 * 64)
    response = np.maximum(patches @ w.reshape(w.shape[0], -1).T, 0).mean(axis=1)  # conv → relu → pool
    return response.mean(axis=0).astype(np.float32), (1 / (response.std(axis=0) + 1e-6)).astype(np.float32)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A project-like directory: runs/, recordings/, models/ as the dashboard scans them."""
    root = tmp_path_factory.mktemp("dash")
    for name in ("runs", "recordings", "models", "videos"):
        (root / name).mkdir()
    return root


@pytest.fixture(scope="session")
def model_file(workspace) -> Path:
    """The tiny model with the benchmark table `python -m export bench` writes next to it."""
    path = write_tiny_onnx(workspace / "models" / "tiny.onnx")
    from export.bench import BenchOptions, run_bench, write_tables

    options = BenchOptions(batch_sizes=(1,), threads=1, warmup=1, min_iters=3, min_seconds=0.0, max_iters=3)
    write_tables(run_bench([path], options), workspace / "models" / "bench", options)
    return path


# --- recording ---------------------------------------------------------------------------


def _recording_from_pipeline(clip: Path, model: Path, face_model: Path, out: Path) -> Path:
    """The real producer: realtime.Pipeline (its CSV sink) over the first frames of the shared clip."""
    from realtime import FaceFindingOptions, OutputOptions, Pipeline, PipelineOptions, ScheduleOptions

    options = PipelineOptions(source=str(clip), model=str(model),
                              faces=FaceFindingOptions(face_model=str(face_model), download_face_model=False),
                              schedule=ScheduleOptions(max_frames=CLIP_FRAMES), outputs=OutputOptions(csv=str(out)))
    with Pipeline(options) as pipeline:
        for _ in pipeline:
            pass
    return out


def _standin_recording(out: Path) -> Path:
    # Stand-in for machines without ../shared: two tracks over 40 frames at 30 fps,
    # one with a gap, in the documented CSV format (affect.recording).
    rng = np.random.default_rng(1)
    labels = list(EXPRESSIONS)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = write_csv_header(fh, labels)
        for frame in range(CLIP_FRAMES):
            t_ms = frame * 1000.0 / 30.0
            for track in (1, 2):
                if track == 2 and 15 <= frame < 22:
                    continue
                logits = rng.normal(0, 1.5, len(labels))
                probs = np.exp(logits) / np.exp(logits).sum()
                best = int(probs.argmax())
                v = float(np.clip(np.sin(frame / 6 + track), -1, 1))
                a = float(np.clip(np.cos(frame / 9 + 2 * track), -1, 1))
                writer.writerow(FaceRow(frame, t_ms, track, 100.0 * track, 80.0, 90.0, 110.0, 0.9,
                                        labels[best], float(probs[best]), probs.tolist(), v, a).as_csv_row())
    return out


@pytest.fixture(scope="session")
def recording_file(workspace, model_file) -> Path:
    out = workspace / "recordings" / "clip.csv"
    clip, face_model = SHARED / "videos" / "short_hamilton_clip.mp4", SHARED / "models" / "face_landmarker.task"
    if realtime_pipeline_ready() and clip.is_file() and face_model.is_file():
        return _recording_from_pipeline(clip, model_file, face_model, out)
    return _standin_recording(out)  # without ../shared: a stand-in in the same format


# --- eval directory ------------------------------------------------------------------------


def _eval_from_train(model: Path, affectnet: Path, out: Path) -> Path:
    """The real producer: train.evaluate.evaluate on a few shared AffectNet images."""
    from train.evaluate import evaluate

    evaluate(model, {"type": "affectnet", "root": str(affectnet)}, out, limit=EVAL_IMAGES,
             bootstrap=200, n_examples=6, batch_size=16)
    return out


def _standin_eval_dir(out: Path) -> Path:
    # Stand-in for machines without ../shared: the files train.evaluate writes, from the
    # same producers (affect.metrics.compute_metrics, train.report plots), on synthetic predictions.
    from affect.files import atomic_write_json
    from affect.metrics import compute_metrics
    from train.report import plot_confusion, plot_examples, plot_va_scatter, write_curves

    rng = np.random.default_rng(2)
    labels = list(EXPRESSIONS)
    n = 120
    y = rng.integers(0, len(labels), n)
    logits = rng.normal(0, 1, (n, len(labels)))
    logits[np.arange(n), y] += 1.5  # better than chance, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    va_true = rng.uniform(-1, 1, (n, 2))
    va_pred = np.clip(0.6 * va_true + rng.normal(0, 0.25, (n, 2)), -1, 1)
    metrics = compute_metrics(labels, y, probs, va_true, va_pred, dataset="affectnet (test fixture)",
                              model="tiny.onnx", bootstrap=200)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", metrics)
    pred = probs.argmax(axis=1)
    lines = ["path,true_label,pred_label," + ",".join(f"p_{lab}" for lab in labels)
             + ",true_valence,true_arousal,pred_valence,pred_arousal"]
    for i in range(n):
        lines.append(",".join([f"img/{i}.jpg", labels[y[i]], labels[pred[i]], *(f"{p:.6f}" for p in probs[i]),
                               *(f"{v:.6f}" for v in (va_true[i, 0], va_true[i, 1], va_pred[i, 0], va_pred[i, 1]))]))
    (out / "predictions.csv").write_text("\n".join(lines) + "\n")
    (out / "history.csv").write_text("epoch,train_loss,val_loss,val_accuracy\n1,2.0,1.9,0.2\n2,1.5,1.6,0.3\n3,1.2,1.4,0.35\n")
    plot_confusion(metrics, out / "confusion.png")
    plot_va_scatter(va_true, va_pred, out / "va_scatter.png")
    faces = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    plot_examples(faces, [f"{labels[y[i]]} → {labels[pred[i]]}" for i in range(4)], out / "examples_correct.png")
    write_curves(out / "history.csv", out / "curves.png")
    return out


@pytest.fixture(scope="session")
def eval_dir(workspace, model_file) -> Path:
    out = workspace / "runs" / "eval_a"
    if has_module("train.evaluate") and (SHARED / "data" / "affectnet").is_dir():
        return _eval_from_train(model_file, SHARED / "data" / "affectnet", out)
    return _standin_eval_dir(out)  # without ../shared (or train): the stand-in keeps the page tests running


@pytest.fixture(scope="session")
def second_eval_dir(workspace, eval_dir) -> Path:
    """A second run for the compare table (a copy is enough: compare reads files)."""
    out = workspace / "runs" / "eval_b"
    if not out.exists():
        shutil.copytree(eval_dir, out)
    return out


@pytest.fixture
def tiny_onnx_writer():
    """`write_tiny_onnx` as a fixture: test modules cannot import a conftest by
    name when several test folders have one."""
    return write_tiny_onnx
