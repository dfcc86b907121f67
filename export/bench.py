"""`python -m export bench MODEL…`: one table to pick the file to deploy from.

Each model file runs through `inference.create_backend` (the same code
the live pipeline uses); its row's format comes from the export FORMATS table
(each row's file kind: `inference.model_files`).
`--all-formats` first walks that table from one checkpoint (each format made
from its source row with default options), one status row per format.
Latency is per call of a fixed batch of real preprocessed faces, after warm-up,
over at least `min_iters` calls and `min_seconds`; accuracy and valence/arousal
CCC come from `affect.metrics` over the whole evaluation folder.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from affect.errors import first_line
from affect.labels import EXPRESSIONS
from affect.metrics import MetricsError
from affect.spec import ModelSpec
from export.common import ExportError, atomic_output, file_size_mb
from export.faces import FaceSet, batches, blendshape_input, generated_faces, load_faces, score_blendshapes
from export.formats import SkipFormat, exportable, format_for_path, run_format
from inference.evaluation import collect, score
from inference.evaluation import predict as run_batches

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    # Labelled faces for accuracy/CCC (and the timed inputs): a folder, or a run's splits.json (its
    # held-out test part). None: the first model's run folder's splits.json if it has one, else
    # generated images (timing only).
    data: Path | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    threads: int = 2
    warmup: int = 10
    min_iters: int = 50
    min_seconds: float = 3.0
    max_iters: int = 2000
    limit: int | None = None  # evaluation images (None: all)
    eval_batch: int = 16
    providers: tuple[str, ...] | None = None  # ONNX Runtime providers ("cpu", "cuda", …)
    face_model: Path | None = None  # MediaPipe landmarker for models that take blendshapes (None: resolved)


@dataclass
class BenchRow:
    model: str
    backend: str  # "PyTorch eager", "ORT FP32", "ORT INT8", "ORT FP16", "TensorRT"
    runtime: str  # what actually ran it (provider / device)
    batch: int
    threads: int
    p50_ms: float
    p95_ms: float
    throughput: float  # images per second (median latency)
    iters: int
    size_mb: float
    model_family: str = ""  # backbone @ input size: relative columns compare within a family
    accuracy: float | None = None
    valence_ccc: float | None = None
    arousal_ccc: float | None = None
    n_eval: int = 0
    data: str = ""  # what the accuracy / CCC figures were measured on
    speedup_vs_ort_fp32: float | None = None
    accuracy_delta_points: float | None = None  # vs ORT FP32, percentage points
    extra: dict = field(default_factory=dict)


@dataclass
class FormatStatus:
    """One row of the table walk: `ok` (file made), `skipped` (why) or `failed` (the error line)."""
    format: str
    status: str
    file: str | None = None
    detail: str = ""


def cuda_available() -> bool:
    """A CUDA GPU torch can see (the GPU-only rows need one to build their file)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def export_all_formats(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, options: BenchOptions
                       ) -> tuple[list[Path], list[FormatStatus]]:
    """Make every format of `export.formats.FORMATS` from `checkpoint` into `out_dir`:
    (the files made, checkpoint first; one status per format). A failed or skipped
    row is reported, not raised, and the rows made from it are skipped too."""
    from affect.face_model import FaceModelError

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if format_for_path(checkpoint).argument != "-":
        raise ExportError(f"{checkpoint}: --all-formats starts from a PyTorch checkpoint (.pt)")
    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: checkpoint not found")
    made: dict[str, Path] = {"-": checkpoint}
    statuses = [FormatStatus("PyTorch", "ok", str(checkpoint), "the checkpoint")]
    for fmt in exportable():
        source = made.get(fmt.source or "")
        if source is None:
            statuses.append(FormatStatus(fmt.name, "skipped", detail=f"its source ({fmt.source}) was not made"))
            continue
        if fmt.needs_gpu and not cuda_available():
            statuses.append(FormatStatus(fmt.name, "skipped", detail="needs a CUDA GPU"))
            continue
        out = out_dir / fmt.default_output(source).name
        try:
            args, kwargs = fmt.default_arguments(source, out, options.data, options.face_model)
            made[fmt.argument] = run_format(fmt.argument, *args, **kwargs)
        except SkipFormat as exc:
            statuses.append(FormatStatus(fmt.name, "skipped", detail=str(exc)))
        except (ExportError, FaceModelError) as exc:
            statuses.append(FormatStatus(fmt.name, "failed", detail=first_line(exc, None)))
        else:
            statuses.append(FormatStatus(fmt.name, "ok", str(made[fmt.argument])))
    for s in statuses:
        log.info("%-10s %-7s %s", s.format, s.status, s.file or s.detail)
    return list(made.values()), statuses


def status_table(statuses: list[FormatStatus]) -> str:
    lines = ["| format | status | file / reason |", "|---|---|---|"]
    lines += [f"| {s.format} | {s.status} | {s.file or s.detail} |" for s in statuses]
    return "\n".join(lines)


def backend_label(path: Path) -> str:
    """Table name of a model file: the backend of its kind, refined by looking inside ONNX graphs."""
    backend = format_for_path(path).file.backend
    if backend == "torch":
        return "PyTorch eager"
    if backend == "tensorrt":
        return "TensorRT"
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}:
        return "ORT INT8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "ORT FP16"
    return "ORT FP32"


def time_batch(predict, x: np.ndarray, options: BenchOptions, blendshapes: np.ndarray | None = None
               ) -> tuple[np.ndarray, int]:
    """Per-call latencies (seconds) after warm-up (`blendshapes`: the second
    input of a model that takes them, else None)."""
    def call() -> None:
        predict(x) if blendshapes is None else predict(x, blendshapes)

    for _ in range(options.warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < options.max_iters and (len(times) < options.min_iters
                                              or time.perf_counter() - start < options.min_seconds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return np.asarray(times), len(times)


def score_faces(predict, faces: FaceSet, spec: ModelSpec, batch_size: int,
                blendshapes: np.ndarray | None = None) -> dict[str, float | int | None]:
    """Accuracy / CCC of `predict` over `faces` through the one evaluator
    (`inference.evaluation`: collect, predict, score — as `train eval` and fit's
    validation); `blendshapes` [N, B] rows go with the faces to a model that takes them."""
    def feeds():
        for start, x in zip(range(0, len(faces), batch_size), batches(faces, spec, batch_size)):
            rows = None if blendshapes is None else blendshapes[start:start + len(x)]
            yield x, rows, np.arange(start, start + len(x))

    targets = collect(faces.expression, EXPRESSIONS, spec.labels, faces.valence, faces.arousal)
    raw = run_batches(predict, feeds())  # no mirroring here
    try:
        metrics = score(targets.take(raw["index"]), raw, spec.labels, temperature=spec.temperature,
                        dataset=faces.source, model=spec.backbone)
    except MetricsError:
        metrics = {}  # no labels or targets in this folder
    return {"n_eval": len(faces), "accuracy": (metrics.get("expression") or {}).get("accuracy"),
            **{f"{name}_ccc": (metrics.get(name) or {}).get("ccc") for name in ("valence", "arousal")}}


def bench_model(path: Path, faces: FaceSet, options: BenchOptions) -> list[BenchRow]:
    from inference.backends import BackendError, create_backend

    try:
        backend = create_backend(path, threads=options.threads,
                                 providers=list(options.providers) if options.providers else None)
    except (BackendError, ValueError) as exc:
        raise ExportError(str(exc)) from None
    label = backend_label(path)
    rows = []
    with backend:
        spec = backend.spec
        if options.data is not None:
            warn_if_trained_on(Path(options.data), spec, path)
        bs = _blendshapes_for(faces, spec, path, options)
        scores = score_faces(backend.predict, faces, spec, options.eval_batch, bs) if not faces.generated else {}
        for batch in options.batch_sizes:
            pool = faces.images * (batch // len(faces) + 1)
            x = next(batches(FaceSet(pool[:batch], faces.expression, faces.valence, faces.arousal,
                                     faces.source), spec, batch))
            timed_bs = None if bs is None else np.resize(bs, (batch, bs.shape[1]))  # the same faces' rows
            times, iters = time_batch(backend.predict, x, options, timed_bs)
            p50 = float(np.median(times))
            rows.append(BenchRow(
                model=str(path), backend=label, runtime=backend.describe(), batch=batch,
                threads=options.threads, p50_ms=1000 * p50, p95_ms=1000 * float(np.percentile(times, 95)),
                throughput=batch / p50, iters=iters, size_mb=file_size_mb(path),
                model_family=f"{spec.backbone} {spec.input_size}px",
                accuracy=scores.get("accuracy"), valence_ccc=scores.get("valence_ccc"),
                arousal_ccc=scores.get("arousal_ccc"), n_eval=int(scores.get("n_eval") or 0),
                data=faces.source if scores else f"timing only ({faces.source})"))
            log.info("%s %s batch %d: p50 %.2f ms, %.1f img/s", label, path.name, batch, rows[-1].p50_ms,
                     rows[-1].throughput)
    return rows


def _blendshapes_for(faces: FaceSet, spec: ModelSpec, path: Path, options: BenchOptions) -> np.ndarray | None:
    """The model's `blendshapes` input for `faces` (None for an image-only
    model): the landmarker runs once over the faces, scoring all of MediaPipe's
    names, and each model takes its own columns."""
    if not spec.blendshapes:
        return None
    from affect.blendshapes import MEDIAPIPE_BLENDSHAPES

    have = faces.blendshape_names or []
    if faces.blendshapes is None or not set(spec.blendshapes) <= set(have):
        names = list(dict.fromkeys([*MEDIAPIPE_BLENDSHAPES, *have, *spec.blendshapes]))
        score_blendshapes(faces, names, options.face_model)
    return blendshape_input(faces, spec, path)


def add_relative(rows: list[BenchRow]) -> None:
    """Speed-up and accuracy change of each row against the ORT FP32 row of the
    same batch and model family (else of the same batch)."""
    for row in rows:
        fp32 = [r for r in rows if r.backend == "ORT FP32" and r.batch == row.batch]
        ref = next((r for r in fp32 if r.model_family == row.model_family), fp32[0] if fp32 else None)
        if ref is None:
            continue
        row.speedup_vs_ort_fp32 = row.throughput / ref.throughput
        if row.accuracy is not None and ref.accuracy is not None:
            row.accuracy_delta_points = 100 * (row.accuracy - ref.accuracy)


def held_out_default(models: list[str | os.PathLike]) -> Path | None:
    """The benchmark's default data: the held-out part of the run the first model
    was trained in (its folder's splits.json), never faces it may have been trained on."""
    for model in models[:1]:
        splits = Path(model).parent / "splits.json"
        if splits.is_file():
            return splits
    return None


def warn_if_trained_on(data: Path, spec: ModelSpec, model: Path) -> None:
    """A bare dataset folder the model names in its `trained_on` scores faces it may have
    been trained on (the README's AffectNet folder: 0.705 there, 0.445 on the held-out part)."""
    if data.suffix.lower() == ".json" or not spec.trained_on:
        return
    names = {part.split(":", 1)[-1].split("/")[0] for part in spec.trained_on.replace(" | ", "+").split("+")}
    if data.name in names:
        log.warning("%s: %s was trained on a dataset of this name (trained_on %s); its figures may include "
                    "training faces: pass the run's splits.json for its held-out part", data, model.name,
                    spec.trained_on)


def load_bench_faces(data: Path, limit: int | None) -> FaceSet:
    """`data`'s faces; a run's splits.json gives its held-out test part."""
    faces = load_faces(data, limit=limit, split="test")
    if data.suffix.lower() == ".json" and not (faces.expression >= 0).any() and not faces.has_va:
        raise ExportError(f"{data}: none of the {len(faces)} held-out faces has a label here (their dataset "
                          "folders moved or gone?); no accuracy can be measured")
    return faces


def run_bench(models: list[str | os.PathLike], options: BenchOptions | None = None) -> list[BenchRow]:
    options = options or BenchOptions()
    if options.limit is not None and options.limit < 1:
        raise ExportError(f"--limit {options.limit}: give a number of evaluation faces of at least 1, "
                          "or leave it out for all of them")
    if options.data is None:
        options.data = held_out_default(models)
        if options.data is not None:
            log.info("bench: data %s (the run's held-out test part)", options.data)
    if options.data is not None:
        faces = load_bench_faces(Path(options.data), options.limit)
    else:
        log.warning("bench: no --data and no splits.json beside %s; timing on generated images, no accuracy "
                    "columns", models[0] if models else "the models")
        faces = generated_faces(max(options.batch_sizes))
    rows: list[BenchRow] = []
    for model in models:
        rows += bench_model(Path(model), faces, options)
    add_relative(rows)
    return rows


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, pattern)


def markdown_table(rows: list[BenchRow], options: BenchOptions | None = None) -> str:
    head = ("| model | family | backend | batch | threads | p50 ms | p95 ms | img/s | × ORT FP32 | MB | accuracy "
            "| Δ acc (pts) | valence CCC | arousal CCC | n | data |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        name = f"{Path(r.model).parent.name}/{Path(r.model).name}" if Path(r.model).parent.name else r.model
        lines.append(f"| {name} | {r.model_family} | {r.backend} | {r.batch} | {r.threads} | {r.p50_ms:.2f} | "
                     f"{r.p95_ms:.2f} | {r.throughput:.1f} | {_fmt(r.speedup_vs_ort_fp32, '.2f')} | "
                     f"{r.size_mb:.1f} | {_fmt(r.accuracy, '.3f')} | {_fmt(r.accuracy_delta_points, '+.1f')} | "
                     f"{_fmt(r.valence_ccc, '.3f')} | {_fmt(r.arousal_ccc, '.3f')} | {r.n_eval} | {r.data} |")
    return "\n".join(lines)


def environment(options: BenchOptions) -> dict:
    import onnxruntime

    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "threads": options.threads, "warmup": options.warmup, "min_iters": options.min_iters,
            "min_seconds": options.min_seconds, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "data": str(options.data) if options.data else None}


def write_tables(rows: list[BenchRow], stem: str | os.PathLike, options: BenchOptions | None = None,
                 statuses: list[FormatStatus] | None = None) -> str:
    """Write `<stem>.md` and `<stem>.json` (with the format walk's status rows when
    given); return the markdown."""
    options = options or BenchOptions()
    stem = Path(stem)
    env = environment(options)
    md = (markdown_table(rows) + f"\n\nThreads: {options.threads} (intra-op); warm-up {options.warmup} calls; "
          f"median of ≥{options.min_iters} calls and ≥{options.min_seconds:g} s per row; "
          f"ONNX Runtime {env['onnxruntime']}; data: {env['data'] or 'generated images'}.\n")
    if statuses is not None:
        md = status_table(statuses) + "\n\n" + md
    with atomic_output(stem.with_suffix(".md")) as tmp:
        tmp.write_text(md, encoding="utf-8")
    with atomic_output(stem.with_suffix(".json")) as tmp:
        doc = {"environment": env, "rows": [asdict(r) for r in rows]}
        if statuses is not None:
            doc["formats"] = [asdict(s) for s in statuses]
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return md
