"""Per-face model time of ONNX files, batch 1, one ONNX Runtime thread, rounds alternating, medians:
`python bench/model_time.py A.onnx B.onnx [--rounds 5 --iters 50]`. Prints each file's median ms and
its ratio to the first."""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--iters", type=int, default=50)
args = ap.parse_args()
opts = ort.SessionOptions()
opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
sessions = {}
for m in args.models:
    s = ort.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
    shape = [1] + [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape[1:]]
    sessions[m] = (s, {s.get_inputs()[0].name: np.random.rand(*shape).astype(np.float32)})
times = {m: [] for m in args.models}
for _ in range(args.rounds):
    for m, (s, feed) in sessions.items():
        s.run(None, feed)  # warm-up
        t = time.perf_counter()
        for _ in range(args.iters):
            s.run(None, feed)
        times[m].append((time.perf_counter() - t) / args.iters * 1000)
base = statistics.median(times[args.models[0]])
for m in args.models:
    med = statistics.median(times[m])
    print(f"{m}: {med:.2f} ms (rounds {', '.join(f'{x:.2f}' for x in times[m])}), {med / base:.2f}x the first")
