"""Where the videos of a corpus are read: worker processes on this machine, or Ray tasks.

Local: `workers` processes (`worker_context`: no thread or model state is inherited), each handed
one video at a time by this process, which therefore always knows which video a worker
holds: a worker that dies (a decoder crash, the OOM killer) is one failure line for its
video and is replaced. Workers ignore Ctrl-C (the terminal sends it to the whole
process group); this process ends them, so an interrupt loses only the videos in flight.
A worker also dies with this process (a pipe only this process writes to reaches EOF), so
a `kill -9` of the command leaves nothing running.

Ray: the same `process_video` as a Ray task per video on an existing cluster
(`--ray auto` or an address); Ray is an optional extra (`pip install affectcam[ray]`).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from affect.errors import first_line
from realtime.corpus.video import VideoOutcome, VideoTask, process_video

# Threads one worker keeps busy with the settings it gets when there are several (`worker_settings`:
# sequential stages, one inference thread, one OpenCV thread): 1.05 and 1.06 in two runs on a 2-core
# AMD EPYC (bench/corpus_throughput.py's overhead part, session 10, a loaded machine;
# docs/BENCHMARKS.md "Corpus"), so the default --workers is about one per core (2 on 2 cores, 15 on
# 16); three such workers on 2 cores read less than two. (With the camera's overlapped stages and
# OpenCV's own pool one worker kept 1.65-1.96 threads busy, and two such workers read only 1.29x the
# video of one on a quiet 2-core AMD EPYC: their threads fought for the cores.)
THREADS_PER_WORKER = 1.05
# What each of several workers runs with unless the command names it (docs/BENCHMARKS.md "Corpus").
SHARED_THREADS = 1  # ONNX Runtime intra-op threads
SHARED_CV_THREADS = 1  # OpenCV's thread pool (resizing, colour conversion); $OPENCV_FOR_THREADS_NUM names it
CV_THREADS_ENV = "OPENCV_FOR_THREADS_NUM"


@dataclass(frozen=True)
class WorkerSettings:
    """How each worker runs a video: its stages, ONNX Runtime's and OpenCV's threads. One worker
    alone runs the camera's defaults (overlapped stages); each of several (or a Ray task, which asks
    for one CPU) runs on about one core, so that the workers do not oversubscribe the cores. What
    the command names (--sequential/--overlap, --threads, $AFFECTCAM_ORT_THREADS,
    $OPENCV_FOR_THREADS_NUM) wins."""
    sequential: bool
    threads: int | None  # None: the camera's default ($AFFECTCAM_ORT_THREADS, else realtime.pipeline's)
    cv_threads: int | None  # cv2.setNumThreads in the worker; None: OpenCV's own default
    shared: bool  # several workers (or Ray tasks) share the machine
    named: tuple[str, ...] = ()  # the settings the command named

    def apply(self, options: dict[str, Any]) -> dict[str, Any]:
        """The pipeline options a worker gets (`VideoTask.args`)."""
        return {**options, "sequential": self.sequential, "threads": self.threads}

    def describe(self) -> str:
        from inference.backends import THREADS_ENV
        from realtime.pipeline import DEFAULT_THREADS

        stages = "sequential stages (one thread)" if self.sequential else "overlapped stages"
        threads = self.threads or os.environ.get(THREADS_ENV) or DEFAULT_THREADS or "the backend's default"
        cv = self.cv_threads or _opencv_threads()
        default = "the default for several workers" if self.shared else "the default for one worker"
        why = default if not self.named else f"{', '.join(self.named)} as named" + \
            ("" if len(self.named) == 3 else f"; the rest {default}")
        return f"{stages}, {threads} inference thread(s), {cv} OpenCV thread(s) ({why})"


def _opencv_threads() -> int:
    import cv2

    return cv2.getNumThreads()


def worker_settings(options: dict[str, Any], workers: int, ray: bool = False) -> WorkerSettings:
    """The settings of each worker for `workers` workers running at once (`ray`: Ray tasks)."""
    from inference.backends import THREADS_ENV

    shared = ray or workers > 1
    named = []
    sequential = options.get("sequential")
    if sequential is None:
        sequential = shared
    else:
        named.append("--sequential" if sequential else "--overlap")
    threads = options.get("threads")
    if threads is not None:
        named.append(f"--threads {threads}")
    elif os.environ.get(THREADS_ENV):
        named.append(f"${THREADS_ENV}")
    elif shared:
        threads = SHARED_THREADS
    cv_threads = None
    if os.environ.get(CV_THREADS_ENV):
        named.append(f"${CV_THREADS_ENV}")
    elif shared:
        cv_threads = SHARED_CV_THREADS
    return WorkerSettings(bool(sequential), threads, cv_threads, shared, tuple(named))


Events = Callable[[str, Any], None]


class RayMissing(RuntimeError):
    """--ray without Ray installed."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(cores: int | None = None) -> int:
    """As many workers as the cores hold at the measured threads of one (`THREADS_PER_WORKER`), at
    least two where there are two cores."""
    cores = cores or available_cores()
    return max(min(2, cores), int(cores / THREADS_PER_WORKER + 0.5))


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _exit_with_main(life: Any) -> None:
    """The main process holds the only write end of `life`: EOF means it is gone (even by
    kill -9), and this worker goes too. (A forkserver worker's parent is the forkserver,
    which outlives a killed main while any worker lives, so PR_SET_PDEATHSIG alone is not enough.)"""
    def watch() -> None:
        try:
            life.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="affectcam-corpus-watch", daemon=True).start()


def _worker(inbox: Any, events: Any, worker_id: int, life: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _exit_with_main(life)

    def progress(kind: str, key: str, n: int) -> None:
        events.put((kind, worker_id, key, n))

    while True:
        task = inbox.get()
        if task is None:
            return
        events.put(("outcome", worker_id, task.key, process_video(task, progress)))


def worker_context():
    """forkserver where there is one (Linux): a clean process with the pipeline's modules
    imported once, from which each worker forks in a moment; else spawn. Never a plain fork
    of this process, whose threads (ONNX Runtime, MediaPipe, tqdm) a child would inherit
    half-held."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["realtime.corpus.video", "realtime.pipeline", "realtime.cam"])
        return ctx
    return mp.get_context("spawn")


class LocalRunner:
    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self.ctx = worker_context()
        self.events = self.ctx.Queue()
        self._life_r, self._life_w = self.ctx.Pipe(duplex=False)
        self.procs: dict[int, Any] = {}
        self.inboxes: dict[int, Any] = {}
        self._next_id = 0

    def _start_worker(self) -> int:
        wid, self._next_id = self._next_id, self._next_id + 1
        inbox = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker, args=(inbox, self.events, wid, self._life_r), name=f"affectcam-corpus-{wid}",
                                daemon=True)
        proc.start()
        self.procs[wid], self.inboxes[wid] = proc, inbox
        return wid

    def run(self, tasks: Iterable[VideoTask], on_event: Events) -> Iterator[VideoOutcome]:
        pending = deque(tasks)
        busy: dict[int, VideoTask] = {}
        try:
            for _ in range(min(self.workers, len(pending))):
                self._start_worker()
            while pending or busy:
                for wid in list(self.procs):
                    if wid not in busy and pending:
                        busy[wid] = task = pending.popleft()
                        self.inboxes[wid].put(task)
                try:
                    kind, wid, key, payload = self.events.get(timeout=0.5)
                except queue.Empty:
                    yield from self._reap(busy, bool(pending))
                    continue
                if kind == "outcome":
                    busy.pop(wid, None)
                    yield payload
                else:
                    on_event(kind, (key, payload))
        finally:
            self.close()

    def _reap(self, busy: dict[int, VideoTask], more: bool) -> Iterator[VideoOutcome]:
        """Workers that died holding a video: a failure line each, and a new worker if work is left."""
        for wid, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            self.procs.pop(wid)
            self.inboxes.pop(wid)
            task = busy.pop(wid, None)
            if task is not None:
                code = proc.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                yield VideoOutcome(task.key, task.path, ok=False,
                                   error=f"{task.path}: the worker reading it died ({how})")
            if more or busy:
                self._start_worker()

    def close(self) -> None:
        for inbox in self.inboxes.values():
            try:
                inbox.put_nowait(None)
            except (ValueError, OSError, queue.Full):
                pass
        for proc in self.procs.values():
            proc.join(timeout=0.2)
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs.values():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self.procs.clear()
        self.inboxes.clear()
        self._life_w.close()


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing("--ray needs Ray, which is not installed: pip install 'affectcam[ray]'") from None
    return ray


def run_ray(tasks: list[VideoTask], address: str, on_event: Events) -> Iterator[VideoOutcome]:
    """Each video a Ray task on the cluster at `address` ("auto": the one this machine runs)."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayMissing(f"--ray {address}: cannot connect to a Ray cluster ({first_line(exc, None)})") \
                from None
    remote = ray.remote(num_cpus=1, max_retries=0)(process_video)
    refs = {remote.remote(task): task for task in tasks}
    for task in tasks:
        on_event("start", (task.key, 0))
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                task = refs.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:  # a task that crashed its worker
                    line = str(exc).strip().splitlines()
                    yield VideoOutcome(task.key, task.path, ok=False,
                                       error=f"{task.path}: the Ray task failed ({line[0] if line else type(exc).__name__})")
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
