"""The one model-file table that export, the backends, the benchmark and the
dashboard read, and the one evaluator's collect / score steps."""

from __future__ import annotations

import numpy as np
import pytest

from affect.labels import EXPRESSIONS
from affect.metrics import compute_metrics
from inference.evaluation import collect, score
from inference.model_files import MODEL_FILES, ModelFileError, model_file, model_file_for, suffixes_for


def test_a_file_is_the_kind_of_its_longest_suffix():
    assert model_file_for("runs/x/m.int8.onnx").name == "ONNX INT8"
    assert model_file_for("m.FP16.ONNX").name == "ONNX FP16"
    assert model_file_for("m.onnx").name == "ONNX"
    assert model_file_for("best.plan").backend == "tensorrt"
    assert model_file_for("weights.pth").name == "PyTorch"
    with pytest.raises(ModelFileError, match="notes.txt: unknown model file kind '.txt'"):
        model_file_for("notes.txt")
    assert model_file("ONNX INT8").output_for("runs/x/m.onnx").name == "m.int8.onnx"
    assert model_file("TensorRT").output_for("m.int8.onnx").name == "m.int8.engine"


def test_every_reader_of_model_files_reads_the_one_table():
    from dashboard.data import MODEL_SUFFIXES
    from export.formats import FORMATS, format_for_path
    from inference.backends import BACKENDS, backend_for_path

    assert [f.name for f in FORMATS] == [row.name for row in MODEL_FILES]
    for row in MODEL_FILES:
        for suffix in row.suffixes:
            path = f"dir/model{suffix}"
            assert format_for_path(path).name == row.name
            assert backend_for_path(path) == row.backend
            assert path.rsplit(".", 1)[-1] in {s.lstrip(".") for s in BACKENDS[row.backend].suffixes}
        assert next(f for f in FORMATS if f.name == row.name).suffix == row.suffix
    assert MODEL_SUFFIXES == suffixes_for("onnxruntime") == (".onnx",)


def test_score_is_compute_metrics_on_the_model_labels_and_the_predicted_rows():
    rng = np.random.default_rng(0)
    model_labels = ["Neutral", "Happy", "Sad"]
    # Dataset labels in canonical order: Anger (not a model class) and unlabelled faces too.
    expression = [EXPRESSIONS.index(n) for n in ("Happy", "Sad", "Anger", "Neutral", "Happy", "Sad")] + [-1]
    valence = rng.uniform(-1, 1, len(expression))
    arousal = np.where(np.arange(len(expression)) % 2 == 0, rng.uniform(-1, 1, len(expression)), np.nan)
    targets = collect(expression, EXPRESSIONS, model_labels, valence, arousal)
    assert targets.expression.tolist() == [1, 2, -1, 0, 1, 2, -1] and targets.lacking == {"Anger": 1}

    rows = np.array([5, 0, 1, 3, 6, 2])  # the readable faces, in the order they were predicted
    logits = rng.normal(size=(len(rows), 3))
    va = rng.uniform(-1, 1, (len(rows), 2))
    got = score(targets.take(rows), {"index": rows, "logits": logits, "va": va}, model_labels, bootstrap=0)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    want = compute_metrics(model_labels, targets.expression[rows], e / e.sum(axis=1, keepdims=True),
                           targets.va[rows], va, bootstrap=0)
    assert got == want
    assert got["expression"]["n"] == 4 and got["n"] == 6  # unlabelled / lacking faces score only V/A
