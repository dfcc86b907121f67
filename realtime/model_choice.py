"""Which packaged model file runs by default: INT8 or FP32, by measurement.

INT8 is not faster everywhere: on a CPU without VNNI (AMD Zen 1, AVX2) the
INT8 graph ran at 0.90x its FP32 twin. So the first time the packaged model
is asked for on a machine, both files are timed here (one ONNX Runtime
session at a time, batch 1, alternating A B A B, medians) and the faster one
is recorded in the cache (`<cache root>/model_choice.json`, keyed by CPU
model, ONNX Runtime version, thread settings and the two files' sizes and
times); later starts read the record. `$AFFECTCAM_DEFAULT_MODEL=int8|fp32`
(or `--model PATH`) overrides the measurement.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from affect.files import atomic_write_text

PACKAGED_DIR = Path(__file__).resolve().parent / "models"
STEM = "affectcam_default"
CHOICE_ENV = "AFFECTCAM_DEFAULT_MODEL"
CACHE_FILE = "model_choice.json"
TIMED_RUNS = 12  # per file, after 3 untimed: about a second in all on a slow 2-core CPU


class ModelChoiceError(RuntimeError):
    """No packaged model to choose from, or a bad override."""


def packaged_files(directory: Path | None = None) -> dict[str, Path]:
    d = Path(directory or PACKAGED_DIR)
    return {"fp32": d / f"{STEM}.onnx", "int8": d / f"{STEM}.int8.onnx"}


def cpu_model() -> str:
    """The CPU's name with its family and model numbers (a virtual machine may call every
    EPYC generation just "AMD EPYC"), and whether it has VNNI (what INT8 speed hangs on)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    vnni = "vnni" if any("vnni" in f for f in flags) else "no vnni"
    return f"{fields['model name']} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {vnni})"


def _cache_path() -> Path:
    from affect.files import cache_root  # the project's one cache root

    return cache_root() / CACHE_FILE


def _key(files: dict[str, Path], threads: int | None, spinning: bool | None) -> str:
    import onnxruntime as ort

    stamp = ",".join(f"{k}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for k, p in sorted(files.items()))
    return f"{cpu_model()}|ort {ort.__version__}|threads {threads}|spin {spinning}|{os.cpu_count()} cpus|{stamp}"


def time_models(files: dict[str, Path], threads: int | None = None, spinning: bool | None = None,
                runs: int = TIMED_RUNS) -> dict[str, float]:
    """Median milliseconds per batch-1 call of each file, timed alternately."""
    from inference.backends import create_backend

    backends = {k: create_backend(p, threads=threads, spinning=spinning) for k, p in files.items()}
    try:
        inputs = {}
        for k, b in backends.items():
            s = b.spec.input_size
            inputs[k] = np.random.default_rng(0).standard_normal((1, 3, s, s)).astype(np.float32)
            for _ in range(3):
                b.predict(inputs[k])
        times: dict[str, list[float]] = {k: [] for k in backends}
        for _ in range(runs):
            for k, b in backends.items():  # A B A B: drifting load hits both alike
                t0 = time.perf_counter()
                b.predict(inputs[k])
                times[k].append((time.perf_counter() - t0) * 1000)
        return {k: float(statistics.median(v)) for k, v in times.items()}
    finally:
        for b in backends.values():
            b.close()


def default_model(directory: Path | None = None, threads: int | None = None,
                  spinning: bool | None = None) -> Path:
    """The packaged model file to load when none is given (see the module docstring)."""
    files = packaged_files(directory)
    present = {k: p for k, p in files.items() if p.is_file()}
    if not present:
        raise ModelChoiceError(f"no model given and the packaged default {files['int8']} is not installed: "
                               "pass --model PATH (an exported .onnx, .engine or .pt)")
    wanted = os.environ.get(CHOICE_ENV, "").strip().lower()
    if wanted:
        if wanted not in files:
            raise ModelChoiceError(f"${CHOICE_ENV}={wanted!r}: expected 'int8' or 'fp32'")
        if wanted not in present:
            raise ModelChoiceError(f"${CHOICE_ENV}={wanted}: {files[wanted]} is not installed")
        return present[wanted]
    if len(present) == 1:
        return next(iter(present.values()))
    cache = _cache_path()
    key = _key(present, threads, spinning)
    try:
        record = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    entry = record.get(key) if isinstance(record, dict) else None
    if isinstance(entry, dict) and entry.get("choice") in present:
        return present[entry["choice"]]
    ms = time_models(present, threads, spinning)
    choice = min(ms, key=ms.get)
    print(f"affectcam: timed the packaged model on this CPU: int8 {ms['int8']:.1f} ms, fp32 {ms['fp32']:.1f} ms "
          f"a face; using {choice} (recorded in {cache}; ${CHOICE_ENV}=int8|fp32 overrides)", file=sys.stderr)
    record = record if isinstance(record, dict) else {}
    record[key] = {"choice": choice, "ms": {k: round(v, 3) for k, v in ms.items()},
                   "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        atomic_write_text(cache, json.dumps(record, indent=2))
    except OSError as exc:  # a read-only cache: measure again next time, still run now
        print(f"affectcam: note: could not record the choice in {cache} ({exc})", file=sys.stderr)
    return present[choice]
