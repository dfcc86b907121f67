"""The PyTorch backend: a training checkpoint run through `inference.Backend`'s
interface. It lives with training (it rebuilds the model from train's
registry) and `inference.backends.BACKENDS` names it ("train.torch_backend:
TorchBackend"), so only choosing it imports torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from affect.spec import SpecError
from inference.backends import Backend, BackendError
from train.checkpoint import model_from_checkpoint


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None):
        path = Path(path)
        try:
            model, spec, self.checkpoint = model_from_checkpoint(path)
        except SpecError:
            raise
        except ValueError as exc:  # CheckpointError is a ValueError
            raise BackendError(str(exc)) from None
        super().__init__(path, spec)
        if threads:
            torch.set_num_threads(int(threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()

    def _run(self, batch: np.ndarray, blendshapes: np.ndarray | None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if blendshapes is None:
                out = self.model(x)
            else:
                out = self.model(x, torch.from_numpy(blendshapes).to(self.device))
        return {n: out[n].float().cpu().numpy() for n in self.output_names if n in out}

    def close(self) -> None:
        self.model = None

    def describe(self) -> str:
        return f"torch[{self.device}]:{self.path.name}"
