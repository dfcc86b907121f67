"""Models with the optional second input `blendshapes`: the backends feed it,
the pipeline fills it from MediaPipe's face blendshapes (NaN rows where there
are none), and image-only models are unaffected."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from affect.blendshapes import MEDIAPIPE_BLENDSHAPES, blendshape_row
from affect.labels import EXPRESSIONS
from affect.preprocess import prepare_batch
from affect.spec import ModelSpec, SpecError
from realtime import FaceFindingOptions, ModelOptions, Pipeline, PipelineOptions, ScheduleOptions
from realtime import pipeline as pipeline_module
from realtime.backends import BackendError, create_backend
from realtime.cam import get_args_parser
from realtime.faces import Face
from realtime.pipeline import blendshape_rows
from realtime.smoothing import SmoothingOptions
from realtime.sources import Frame, Source, SourceOptions

TEST_INPUT_SIZE = 96  # the conftest model's input size


def crops(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (120, 100, 3), dtype=np.uint8) for _ in range(n)]


def scores(names, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, len(names)).astype(np.float32)


# --- backends -------------------------------------------------------------------------------------

def test_onnx_backend_feeds_blendshapes_and_nan_rows_mean_image_only(blendshape_onnx_model):
    with create_backend(blendshape_onnx_model, threads=1) as backend:
        names = backend.spec.blendshapes
        assert len(names) == 40 and backend.takes_blendshapes
        batch = prepare_batch(crops(), backend.spec)
        nan = np.full((3, len(names)), np.nan, np.float32)
        real = np.stack([scores(names, s) for s in range(3)])
        image_only = backend.predict(batch)
        with_nan = backend.predict(batch, nan)
        with_real = backend.predict(batch, real)
        # None and NaN rows are the same thing: the image alone
        np.testing.assert_allclose(image_only["expression"], with_nan["expression"], atol=1e-5)
        # real scores change every face's outputs
        diff = np.abs(with_real["expression"] - with_nan["expression"]).max(axis=1)
        assert (diff > 1e-2).all(), diff
        # rows are per face: a NaN row in a mixed batch gives that face's image-only output
        mixed = real.copy()
        mixed[1] = np.nan
        out = backend.predict(batch, mixed)
        np.testing.assert_allclose(out["expression"][1], with_nan["expression"][1], atol=1e-5)
        np.testing.assert_allclose(out["expression"][0], with_real["expression"][0], atol=1e-5)
        # different scores, different outputs (the values, not just presence, go through)
        other = backend.predict(batch, np.stack([scores(names, s) for s in range(10, 13)]))
        assert not np.allclose(other["expression"], with_real["expression"], atol=1e-3)
        empty = backend.predict(prepare_batch([], backend.spec), np.zeros((0, len(names)), np.float32))
        assert empty["expression"].shape == (0, 8)


def test_wrong_blendshape_width_is_a_one_line_error(blendshape_onnx_model):
    with create_backend(blendshape_onnx_model, threads=1) as backend:
        batch = prepare_batch(crops(2), backend.spec)
        for bad in (np.zeros((2, 52), np.float32), np.zeros((3, 40), np.float32), np.zeros(40, np.float32)):
            with pytest.raises(BackendError, match=r"bs_model\.onnx: .*the model's 40 blendshape names") as info:
                backend.predict(batch, bad)
            assert "\n" not in str(info.value)


def test_image_only_models_ignore_blendshapes(onnx_model):
    with create_backend(onnx_model, threads=1) as backend:
        assert not backend.takes_blendshapes
        batch = prepare_batch(crops(2), backend.spec)
        plain = backend.predict(batch)
        given = backend.predict(batch, np.ones((2, 52), np.float32))
        np.testing.assert_array_equal(plain["expression"], given["expression"])


def test_spec_and_graph_must_agree_on_blendshapes(tmp_path, export_onnx):
    spec = ModelSpec(input_size=TEST_INPUT_SIZE, mean=[0.5] * 3, std=[0.5] * 3,
                     blendshapes=list(MEDIAPIPE_BLENDSHAPES))
    # metadata lists blendshapes, the graph has no such input
    path = export_onnx(tmp_path / "image_only_graph.onnx", spec=spec)
    with pytest.raises(SpecError, match=r"image_only_graph\.onnx: the spec lists 52 blendshapes but the graph "
                                        r"has no 'blendshapes' input") as info:
        create_backend(path)
    assert "\n" not in str(info.value)
    # the graph takes blendshapes, the metadata lists none
    plain_spec = ModelSpec(input_size=TEST_INPUT_SIZE, mean=[0.5] * 3, std=[0.5] * 3)
    path = export_onnx(tmp_path / "bs_graph.onnx", spec=plain_spec, blendshapes=["jawOpen", "browInnerUp"])
    with pytest.raises(SpecError, match=r"bs_graph\.onnx: the graph takes 'blendshapes' but the spec lists no"):
        create_backend(path)


def test_torch_backend_passes_blendshapes_to_the_model(tmp_path):
    torch = pytest.importorskip("torch")
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model

    names = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp"]
    torch.manual_seed(0)
    model = build_model("small_cnn", pretrained="none", input_size=64, hidden=32, dropout=0.0, blendshapes=names)
    spec = spec_for(model.eval(), list(EXPRESSIONS))
    assert spec.blendshapes == names
    path = save_checkpoint(tmp_path / "bs.pt", model=model, spec=spec, model_args=model_args(model, 32, 0.0))
    with create_backend(path, threads=1) as backend:
        batch = prepare_batch(crops(2), backend.spec)
        real = np.stack([scores(names, s) for s in range(2)])
        with_real = backend.predict(batch, real)
        with_none = backend.predict(batch)
        with_nan = backend.predict(batch, np.full((2, 4), np.nan, np.float32))
        np.testing.assert_allclose(with_none["expression"], with_nan["expression"], atol=1e-6)
        assert not np.allclose(with_real["expression"], with_none["expression"], atol=1e-4)
        with torch.inference_mode():  # what the model computes with these scores
            ref = model(torch.from_numpy(batch), torch.from_numpy(real))["expression"].numpy()
        np.testing.assert_allclose(with_real["expression"], ref, atol=1e-5)
        with pytest.raises(BackendError, match=r"bs\.pt: .*the model's 4 blendshape names"):
            backend.predict(batch, np.zeros((2, 52), np.float32))


# --- the pipeline ---------------------------------------------------------------------------------

def test_rows_follow_the_spec_order_and_are_nan_without_blendshapes():
    names = ["mouthSmileLeft", "jawOpen"]
    mesh = Face((0, 0, 10, 10), 1.0, blendshapes={"jawOpen": 0.25, "mouthSmileLeft": 0.75, "other": 0.1})
    detector = Face((20, 0, 10, 10), 0.9, source="detector")
    rows = blendshape_rows([mesh, detector], names)
    assert rows.dtype == np.float32 and rows.shape == (2, 2)
    np.testing.assert_array_equal(rows[0], [0.75, 0.25])
    assert np.isnan(rows[1]).all()
    assert blendshape_rows([], names).shape == (0, 2)


class ClipFrames(Source):
    """Frames 100-105 of the shared clip: one singer, with a mesh, in every one."""

    kind = "file"

    def __init__(self, clip):
        super().__init__("clip frames", SourceOptions())
        cap = cv2.VideoCapture(str(clip))
        self.images = [cap.read()[1] for _ in range(106)][100:]
        cap.release()

    def __iter__(self):
        for i, img in enumerate(self.images):
            self.stats.frames += 1
            yield Frame(100 + i, (100 + i) * 1000 / 30, img)


def run_spied(options: PipelineOptions):
    """Frame results and the (batch size, blendshape rows) of every predict call."""
    calls = []
    with Pipeline(options) as p:
        predict = p.backend.predict

        def spy(batch, blendshapes=None):
            calls.append((len(batch), None if blendshapes is None else np.array(blendshapes)))
            return predict(batch, blendshapes)

        p.backend.predict = spy
        results = list(p)
        reference = p.backend
        # each face's crop, run again with a NaN row: what the model says from the image alone
        image_only = [[predict(prepare_batch([f.crop], p.spec))["expression"][0] for f in r.faces]
                      for r in results]
    return results, calls, reference.spec, image_only


@pytest.mark.parametrize("record", [True, False], ids=["recorded", "not-recorded"])
def test_landmarker_faces_feed_their_blendshapes_to_the_model(hamilton_clip, blendshape_onnx_model,
                                                              face_model_path, record):
    opts = PipelineOptions(source=ClipFrames(hamilton_clip), model=ModelOptions(blendshape_onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path, blendshapes=record),
                           smoothing=SmoothingOptions(ema=False, one_euro=False))
    results, calls, spec, image_only = run_spied(opts)
    assert len(calls) == len(results) == 6
    mesh_faces = 0
    for r, (n, rows), alone in zip(results, calls, image_only):
        assert rows is not None and rows.shape == (n, 40) and n == len(r.faces)
        for face, row, p_alone in zip(r.faces, rows, alone):
            if face.landmarks is None:  # a face the detector filled in
                assert np.isnan(row).all()
                continue
            mesh_faces += 1
            assert np.isfinite(row).all() and ((0 <= row) & (row <= 1)).all()
            assert row.std() > 0.01  # real scores, not a constant
            if record:
                np.testing.assert_array_equal(row, blendshape_row(face.blendshapes, spec.blendshapes))
            else:
                assert face.blendshapes is None  # computed for the model, not reported
            # the same crop gives another reading with its blendshapes than from the image alone
            p_alone = np.exp(p_alone - p_alone.max())
            assert np.abs(face.raw_probabilities - p_alone / p_alone.sum()).max() > 1e-3
    assert mesh_faces >= 5


def test_detector_path_gives_nan_rows_and_a_single_notice(hamilton_clip, blendshape_onnx_model,
                                                          face_model_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline_module, "_NOTIFIED", set())
    opts = dict(model=ModelOptions(blendshape_onnx_model, threads=1),
                faces=FaceFindingOptions("detector", face_model=face_model_path))
    results, calls, _, _ = run_spied(PipelineOptions(source=ClipFrames(hamilton_clip), **opts))
    assert sum(len(r.faces) for r in results) >= 5
    assert all(rows.shape == (n, 40) and np.isnan(rows).all() for n, rows in calls)
    err = [line for line in capsys.readouterr().err.splitlines() if "bs_model.onnx" in line]
    assert len(err) == 1 and "reads the face images alone" in err[0]
    with Pipeline(PipelineOptions(source=ClipFrames(hamilton_clip), **opts, schedule=ScheduleOptions(max_frames=1))) as p:
        list(p)
    assert "bs_model.onnx" not in capsys.readouterr().err  # once, not on every run


def test_image_only_model_on_the_landmarker_path_gets_no_rows(hamilton_clip, onnx_model, face_model_path):
    opts = PipelineOptions(source=ClipFrames(hamilton_clip), model=ModelOptions(onnx_model, threads=1),
                           faces=FaceFindingOptions(face_model=face_model_path), schedule=ScheduleOptions(max_frames=2))
    results, calls, _, _ = run_spied(opts)
    assert [n for n, _ in calls] == [len(r.faces) for r in results] and all(rows is None for _, rows in calls)


def test_cli_help_says_what_the_detector_path_means_for_blendshape_models():
    text = " ".join(get_args_parser().format_help().split())
    assert "a model that takes blendshapes then reads the face images alone" in text
