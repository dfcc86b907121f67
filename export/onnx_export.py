"""Checkpoint → ONNX with the model contract's names and metadata, simplified
with onnxslim when that keeps parity, and checked against PyTorch on faces."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affect.errors import first_line
from affect.spec import INPUT_BLENDSHAPES, INPUT_NAME, ModelSpec
from export.common import ExportError, ParityError, atomic_output, check_writable, ort_session, set_metadata
from export.faces import FaceSet, faces_or_generated, feeds, score_blendshapes, with_nan_rows
from inference.backends import BackendError, torch_backend_module
from inference.model_files import model_file

log = logging.getLogger(__name__)

PARITY_IMAGES = 16


@dataclass
class ParityReport:
    """ORT vs PyTorch on the same inputs: max |difference| per output, argmax agreement."""
    max_abs_diff: dict[str, float]
    argmax_agreement: float
    n: int
    source: str
    tolerance: float
    failing: list[str] = field(default_factory=list)
    with_blendshapes: int | None = None  # faces fed real scores (None: an image-only model)

    @property
    def ok(self) -> bool:
        return not self.failing

    def summary(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
        bs = ("" if self.with_blendshapes is None else
              f" ({self.with_blendshapes} with blendshapes, {self.n - self.with_blendshapes} without)")
        return (f"parity on {self.n} images{bs} from {self.source}: max |diff| {diffs} "
                f"(tolerance {self.tolerance:g}); argmax agreement {self.argmax_agreement:.1%}")


def _traced_model(checkpoints: list[Path], blendshape_fusion: float | None, face_model):
    """The PyTorch model to trace and its spec: one checkpoint's, the mean of several, with the
    blendshape classifier fused in on request. Built by the torch backend's module (`train.torch_backend`,
    reached by the name `inference` gives it: export imports nothing from train)."""
    try:
        return torch_backend_module().model_for_export(checkpoints, blendshape_fusion, face_model)
    except BackendError as exc:
        raise ExportError(str(exc)) from None


def _tuple_module(model, names: list[str]):
    """ONNX export wants positional outputs: the dict in the contract's order.
    The optional `blendshapes` argument becomes the graph's second input when
    the export passes it (models whose spec lists blendshapes)."""
    import torch

    class ContractOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor, blendshapes: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
            out = self.model(image) if blendshapes is None else self.model(image, blendshapes)
            return tuple(out[n] for n in names)

    # eval() here, not just on the inner model: the TorchScript exporter traces
    # the wrapper's mode, and a training-mode wrapper exports live dropout.
    return ContractOutputs().eval()


def torch_outputs(model, x: np.ndarray, blendshapes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        if blendshapes is None:
            out = model(torch.from_numpy(x))
        else:
            out = model(torch.from_numpy(x), torch.from_numpy(blendshapes))
        return {k: v.numpy() for k, v in out.items()}


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tolerance: float,
                    n: int, source: str, classes_key: str = "expression") -> ParityReport:
    diffs = {k: float(np.abs(reference[k].astype(np.float64) - candidate[k].astype(np.float64)).max())
             for k in reference}
    agree = float((reference[classes_key].argmax(1) == candidate[classes_key].argmax(1)).mean())
    failing = [k for k, d in diffs.items() if not d <= tolerance]  # `not <=` also catches NaN
    return ParityReport(diffs, agree, n, source, tolerance, failing)


def run_parity(onnx_path: str | os.PathLike, model, spec: ModelSpec, faces: FaceSet,
               tolerance: float, batch_size: int = 8, label: str | os.PathLike | None = None) -> ParityReport:
    """ORT vs PyTorch on `faces` (and their `blendshapes` rows, NaN rows
    included, when the model takes them); `label` names the model in errors."""
    session = ort_session(onnx_path, threads=2)
    names = [o.name for o in session.get_outputs()]
    ref: dict[str, list[np.ndarray]] = {n: [] for n in names}
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    # Batches of several sizes also exercise the dynamic batch axis.
    for feed in feeds(faces, spec, batch_size, label or onnx_path):
        t = torch_outputs(model, feed[INPUT_NAME], feed.get(INPUT_BLENDSHAPES))
        for name, value in zip(names, session.run(names, feed), strict=True):
            ref[name].append(t[name])
            got[name].append(value)
    report = compare_outputs({k: np.concatenate(v) for k, v in ref.items()},
                             {k: np.concatenate(v) for k, v in got.items()}, tolerance, len(faces), faces.source)
    if spec.blendshapes:
        report.with_blendshapes = int(np.isfinite(faces.blendshapes).all(axis=1).sum())
    return report


def _simplified(model_proto):
    try:
        import onnxslim
    except ImportError:
        log.info("onnxslim not installed; keeping the graph as exported")
        return None
    try:
        return onnxslim.slim(model_proto)
    except Exception as exc:  # a simplifier bug must not block an export that is valid without it
        log.warning("onnxslim failed (%s); keeping the graph as exported", type(exc).__name__)
        return None


def export_onnx(checkpoint: str | os.PathLike | list, out: str | os.PathLike | None = None, opset: int = 17,
                parity_data: str | os.PathLike | None = None, tolerance: float = 1e-4,
                simplify: bool = True, face_model: str | os.PathLike | None = None,
                blendshape_fusion: float | None = None, calibrate_run: str | os.PathLike | None = None) -> Path:
    """Export `checkpoint` to ONNX; the file appears only if the parity check passes.
    Several checkpoints export as one graph that averages their outputs.

    A model whose spec lists blendshapes gets a second input `blendshapes`
    [N, B]; its parity faces are scored by the MediaPipe landmarker
    `face_model` (default: `affect.face_model.resolve_face_model()`), and
    every 4th of them is fed a NaN row, the no-blendshapes path.
    `blendshape_fusion` (a weight in (0, 1)) adds a logistic regression over
    the blendshapes, fitted on the first checkpoint's run, to the graph
    (`train.blendshape_fusion`). `calibrate_run` (a run folder): then fit the expression
    temperature on that run's validation parts into the file's metadata (`export.calibrate`)."""
    import onnx
    import torch

    checkpoints = [Path(c) for c in (checkpoint if isinstance(checkpoint, (list, tuple)) else [checkpoint])]
    checkpoint = checkpoints[0]
    out = Path(out) if out is not None else model_file("ONNX").output_for(checkpoint)
    if opset < 17:
        raise ExportError(f"{out}: opset {opset} is below 17, the contract's minimum")
    check_writable(out)
    model, spec = _traced_model(checkpoints, blendshape_fusion, face_model)
    faces = faces_or_generated(parity_data, PARITY_IMAGES, purpose=f"{out} parity check")
    if spec.blendshapes:
        score_blendshapes(faces, spec.blendshapes, face_model)
        faces.blendshapes = with_nan_rows(faces.blendshapes)  # both paths of the graph are compared
    names = spec.output_names
    inputs = spec.input_names
    size = int(spec.input_size)
    first = next(feeds(faces, spec, 2, checkpoint))
    dummy = tuple(torch.from_numpy(first[n]) for n in inputs)
    dynamic = {n: {0: "N"} for n in [*inputs, *names]}

    with atomic_output(out) as tmp:
        with warnings.catch_warnings():
            # dynamo=False: the TorchScript exporter is the dependable path for
            # these CNNs on torch 2.x and gives plain dynamic_axes; it warns
            # that it is legacy.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(_tuple_module(model, names), dummy, str(tmp), input_names=inputs,
                                  output_names=names, dynamic_axes=dynamic, opset_version=opset,
                                  do_constant_folding=True, dynamo=False)
            except OSError:
                raise  # writing the graph failed (a full disk): the output's problem, not the checkpoint's
            except Exception as exc:
                raise ExportError(f"{checkpoint}: torch.onnx.export failed ({first_line(exc)})"
                                  ) from None
        exported = onnx.load(str(tmp))
        candidates = [("exported", exported)]
        if simplify:
            slim = _simplified(exported)
            if slim is not None:
                candidates.insert(0, ("onnxslim", slim))
        report = None
        for label, proto in candidates:
            set_metadata(proto, spec)
            proto.producer_name = "affectcam.export"
            onnx.checker.check_model(proto, full_check=True)
            onnx.save(proto, str(tmp))
            report = run_parity(tmp, model, spec, faces, tolerance, label=out)
            if report.ok:
                log.info("%s graph: %s", label, report.summary())
                break
            log.warning("%s graph fails parity: %s", label, report.summary())
        assert report is not None
        if not report.ok:
            raise ParityError(f"{out}: parity check failed, {report.summary()}; not written "
                              "(widen --tolerance only if this difference is acceptable)")
        if faces.generated:
            log.warning("%s: parity was checked on generated images only; rerun with --data FACES", out)
        extra = f", {INPUT_BLENDSHAPES} [N,{len(spec.blendshapes)}]" if spec.blendshapes else ""
        log.info("%s: input %s [N,3,%d,%d]%s, outputs %s, opset %d", out, INPUT_NAME, size, size, extra, names,
                 opset)
    if calibrate_run is not None:
        from export.calibrate import calibrate_onnx

        calibrate_onnx(out, calibrate_run, out=out)
    return out
