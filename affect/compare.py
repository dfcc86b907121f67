"""One table of headline metrics across run or eval dirs: `python -m train compare`
and the dashboard's Metrics page (here, below both, so the dashboard needs no `train`).

Reads each dir's metrics.json (required), and when present config.yaml /
run.json (backbone, parameters, input size, training time) and a benchmark
JSON (latency). Every headline metric is shown with its bootstrap CI and the
best value of each row in bold, when all runs were evaluated on the same
dataset (across datasets no value is "best"). Runs evaluated on different label sets are
compared on the classes they share (per-class F1, and accuracy / macro-F1
recomputed from the confusion matrices over the shared classes).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affect.files import atomic_write_text
from affect.labels import NAME_ALIASES, canonical_name
from affect.metrics import HEADLINE, MetricsError, check_metrics

BENCH_FILES = ("bench.json", "benchmark.json", "latency.json")
LATENCY_KEYS = ("latency_ms", "mean_ms", "median_ms", "p50_ms")


class CompareError(ValueError):
    """A directory that cannot be compared (no or unreadable metrics.json)."""


@dataclass
class RunMetrics:
    name: str
    path: Path
    metrics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # backbone, parameters, input size, time, latency
    refused: list[str] = field(default_factory=list)  # side files `allowed` refused: one line each


@dataclass
class Row:
    metric: str
    values: list[float | None]
    cis: list[list[float] | None]
    higher_is_better: bool | None  # None: informational, nothing bolded

    def best(self) -> set[int]:
        nums = [(i, v) for i, v in enumerate(self.values) if isinstance(v, (int, float)) and math.isfinite(v)]
        if self.higher_is_better is None or len(nums) < 2:
            return set()
        target = (max if self.higher_is_better else min)(v for _, v in nums)
        return {i for i, v in nums if v == target}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise CompareError(f"{path}: JSON nested too deeply to be read") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompareError(f"{path}: unreadable JSON ({type(exc).__name__}: {exc})") from None


def _read_object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise CompareError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _latency(path: Path) -> float | None:
    """First latency-like number in a benchmark JSON: a top-level key, or the first row of a list."""
    data = _read_json(path)
    candidates = [data]
    for value in data.values() if isinstance(data, dict) else []:
        if isinstance(value, list):
            candidates += [r for r in value if isinstance(r, dict)][:1]
    if isinstance(data, list):
        candidates = [r for r in data if isinstance(r, dict)][:1]
    for c in candidates:
        for key in LATENCY_KEYS:
            if isinstance(c.get(key), (int, float)):
                return float(c[key])
    return None


def load_run(path: str | os.PathLike, allowed: Callable[[Path], bool] | None = None) -> RunMetrics:
    """One dir's metrics and facts; `allowed(path)` (the dashboard's directory check)
    decides whether a side file, such as the model's training run, may be read."""
    path = Path(path)
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise CompareError(f"{path}: no metrics.json (train or evaluate a model into it first)")
    if allowed is not None and not allowed(metrics_path):
        raise CompareError(f"{metrics_path}: outside the allowed directories; refused")
    try:
        metrics = check_metrics(_read_json(metrics_path), str(metrics_path))
    except MetricsError as exc:
        raise CompareError(str(exc)) from None
    except RecursionError:
        raise CompareError(f"{metrics_path}: nested too deeply to be metrics") from None
    refused: list[str] = []

    def readable(side: Path) -> bool:
        """A side file is read only when `allowed` passes it (symlinks resolved): one refused
        is left out of the table and named in one line, never read."""
        if not side.is_file():
            return False
        if allowed is not None and not allowed(side):
            refused.append(f"{side}: outside the allowed directories; refused")
            return False
        return True

    info: dict[str, Any] = {}
    run_dir = path
    model_dir = Path(str(metrics.get("model", ""))).parent if isinstance(metrics.get("model"), str) else None
    if model_dir is not None and allowed is not None and not allowed(model_dir):
        model_dir = None
    if not (path / "run.json").is_file() and model_dir is not None and (model_dir / "run.json").is_file():
        run_dir = model_dir  # an eval directory: its model's training run gives size and time
    if readable(run_dir / "config.yaml"):
        import yaml

        try:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            cfg = {}  # the facts column stays empty; the metrics still compare
        model = (cfg.get("model") if isinstance(cfg, dict) else None) or {}
        if isinstance(model, dict):
            info.update(backbone=model.get("backbone"), input_size=model.get("input_size"))
    if readable(run_dir / "run.json"):
        run = _read_object(run_dir / "run.json")
        info.update({k: run[k] for k in ("backbone", "parameters", "input_size", "train_seconds") if k in run})
    for key in ("parameters", "train_seconds"):  # numbers or nothing: the table divides them
        if not isinstance(info.get(key), (int, float)) or isinstance(info.get(key), bool):
            info.pop(key, None)
    for key in ("backbone", "input_size"):
        if info.get(key) is None and metrics.get(key) is not None:
            info[key] = metrics[key]
    for name in BENCH_FILES:
        if readable(path / name):
            info["latency_ms"] = _latency(path / name)
            break
    return RunMetrics(path.name or str(path), path, metrics, info, refused)


def _canon(name: str) -> str:
    return canonical_name(name) if name.strip().lower() in NAME_ALIASES else name


def _shared_labels(runs: Sequence[RunMetrics]) -> list[str] | None:
    """Classes every run evaluated, in the first run's order; None if all label sets are equal."""
    sets = [[_canon(x) for x in (r.metrics.get("expression") or {}).get("labels", [])] for r in runs]
    sets = [s for s in sets if s]
    if len(sets) < 2 or all(s == sets[0] for s in sets):
        return None
    return [x for x in sets[0] if all(x in s for s in sets[1:])]


def _shared_scores(expr: dict[str, Any], shared: list[str]) -> tuple[float, float]:
    """Accuracy and macro-F1 over `shared` classes from the confusion matrix: the
    rows of shared classes only; a prediction of a non-shared class counts as wrong."""
    names = [_canon(x) for x in expr["labels"]]
    idx = [names.index(x) for x in shared]
    cm = np.asarray(expr["confusion"], np.float64)
    rows = cm[idx]
    tp = rows[:, idx].diagonal()
    support = rows.sum(axis=1)
    predicted = cm[:, idx].sum(axis=0)  # from any true class
    acc = float(tp.sum() / support.sum()) if support.sum() else math.nan
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    return acc, float(f1[present].mean()) if present.any() else math.nan


def same_dataset(runs: Sequence[RunMetrics]) -> bool:
    """Whether every run names the same evaluation dataset: only then is one value "best"."""
    return len({str(r.metrics.get("dataset")) for r in runs}) <= 1


def build_rows(runs: Sequence[RunMetrics]) -> tuple[list[Row], str]:
    scored = True if same_dataset(runs) else None  # across datasets: nothing bolded
    rows = [
        Row("dataset", [r.metrics.get("dataset") for r in runs], [None] * len(runs), None),
        Row("n", [r.metrics.get("n") for r in runs], [None] * len(runs), None),
        Row("backbone", [r.info.get("backbone") for r in runs], [None] * len(runs), None),
        Row("parameters (M)", [r.info["parameters"] / 1e6 if r.info.get("parameters") else None for r in runs],
            [None] * len(runs), False),
        Row("input size", [r.info.get("input_size") for r in runs], [None] * len(runs), None),
        Row("training time (min)", [r.info["train_seconds"] / 60 if r.info.get("train_seconds") else None
                                    for r in runs], [None] * len(runs), False),
        Row("latency (ms)", [r.info.get("latency_ms") for r in runs], [None] * len(runs), False),
    ]
    rows = [r for r in rows if any(v is not None for v in r.values)]
    for section, key, ci_key, higher in HEADLINE:
        values = [(r.metrics.get(section) or {}).get(key) for r in runs]
        if all(v is None for v in values):
            continue
        cis = [((r.metrics.get("ci") or {}).get(ci_key) if ci_key else None) for r in runs]
        rows.append(Row(f"{section} {key}", values, cis, higher if scored else None))
    note = ""
    shared = _shared_labels(runs)
    if shared is not None:
        note = (f"The runs were evaluated on different label sets; rows marked (shared) use only the "
                f"{len(shared)} classes all of them have: {shared}. Full-set rows are not comparable.")
        scores = [_shared_scores(r.metrics["expression"], shared) if r.metrics.get("expression") else
                  (None, None) for r in runs]
        rows.append(Row("expression accuracy (shared)", [s[0] for s in scores], [None] * len(runs), scored))
        rows.append(Row("expression macro_f1 (shared)", [s[1] for s in scores], [None] * len(runs), scored))
    classes = shared if shared is not None else (runs[0].metrics.get("expression") or {}).get("labels", [])
    for label in classes:
        values = []
        for r in runs:
            per_class = {_canon(k): v for k, v in ((r.metrics.get("expression") or {}).get("per_class") or {}).items()}
            values.append((per_class.get(_canon(label)) or {}).get("f1"))
        if any(v is not None for v in values):
            rows.append(Row(f"F1 {label}", values, [None] * len(runs), scored))
    return rows, note


def _cell(value: Any, ci: list[float] | None, bold: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if bold:
        text = f"**{text}**"
    if ci and all(isinstance(c, (int, float)) for c in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _names(paths: Sequence[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    if len(set(names)) < len(names):  # same folder names (runs/a/eval, runs/b/eval): use the paths
        names = [str(p) for p in paths]
    return names


def compare(dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None,
            allowed: Callable[[Path], bool] | None = None, refused: list[str] | None = None) -> tuple[str, str]:
    """Markdown table and long-format CSV (metric, run, value, ci_low, ci_high, best)
    across run/eval dirs; with `out_dir`, also writes compare.md and compare.csv there.
    `allowed(path)` vets every file read besides metrics.json's own dir listing (the
    dashboard's confinement check); the side files it refuses are appended to `refused`."""
    if not dirs:
        raise CompareError("compare: give at least one run or eval directory")
    runs = [load_run(d, allowed) for d in dirs]
    for run, name in zip(runs, _names([r.path for r in runs]), strict=True):
        run.name = name
    rows, note = build_rows(runs)
    level = int(round(100 * float(runs[0].metrics.get("ci_level", 0.95))))
    best = ("best per row in bold" if same_dataset(runs) else
            "no value is marked best: the runs were evaluated on different datasets")
    md = ["# Comparison", "", f"Values with their {level} % bootstrap CI where computed; {best}.", ""]
    if note:
        md += [f"**Note:** {note}", ""]
    not_read = [line for r in runs for line in r.refused]
    if refused is not None:
        refused.extend(not_read)
    if not_read:
        md += ["**Not read:** " + "; ".join(not_read), ""]
    md += ["| metric | " + " | ".join(r.name for r in runs) + " |", "| --- |" + " --- |" * len(runs)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", "run", "value", "ci_low", "ci_high", "best"])
    for row in rows:
        best = row.best()
        md.append(f"| {row.metric} | " + " | ".join(
            _cell(v, c, i in best) for i, (v, c) in enumerate(zip(row.values, row.cis, strict=True))) + " |")
        for i, run in enumerate(runs):
            value, ci = row.values[i], row.cis[i] or [None, None]
            writer.writerow([row.metric, run.name, "" if value is None else value,
                             "" if ci[0] is None else ci[0], "" if ci[1] is None else ci[1], int(i in best)])
    markdown = "\n".join(md) + "\n"
    csv_text = buf.getvalue()
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_text(out / "compare.md", markdown)
        atomic_write_text(out / "compare.csv", csv_text)
    return markdown, csv_text
