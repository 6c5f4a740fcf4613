"""The one model worker shared by every connection: a thread that owns the Reconstructor.

Connections submit complete slices (:class:`Job`); the worker takes what is waiting, up to the batch
size, groups slices of the same shape (across connections) into one ``reconstruct`` call, and hands
each image (or the error) back to its connection. GPU work is therefore serialised and batched. A batch
that fails is retried slice by slice, so one client's bad slice never costs another client its image.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastrecon.data.mrd import MRDSlice
from fastrecon.errors import FastreconError, ReconstructionError

log = logging.getLogger("fastrecon.serve")


@dataclass
class Job:
    """One slice to reconstruct, and where its result goes.

    ``deliver(job, image, error)`` is called from the worker thread with the ``(H, W)`` float32 image,
    or with ``image=None`` and the error's message. ``cancelled()`` true skips the job.
    """

    slice: MRDSlice
    deliver: Callable[[Job, np.ndarray | None, str | None], None]
    cancelled: Callable[[], bool] = lambda: False
    submitted_at: float = field(default_factory=time.monotonic)
    done_at: float = 0.0


def describe(exc: BaseException) -> str:
    """A one-line message for a client: fastrecon's own errors as they are, others with their type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, FastreconError):
        return text
    return f"reconstruction failed ({type(exc).__name__}): {text}"


class ModelWorker:
    """Runs ``recon.reconstruct`` on batches of submitted slices in one thread."""

    def __init__(self, recon: Any, *, batch_size: int = 8) -> None:
        self.recon = recon
        self.batch_size = max(1, int(batch_size))
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fastrecon-model-worker", daemon=True)
        self.batches = 0
        self.slices = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def stop(self, timeout: float | None = None) -> None:
        """Finish what was submitted, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _take(self) -> tuple[list[Job], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        jobs, stop = [first], False
        while len(jobs) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            jobs.append(item)
        return jobs, stop

    def _run(self) -> None:
        while True:
            jobs, stop = self._take()
            try:
                groups: dict[tuple[int, ...], list[Job]] = {}
                for job in jobs:
                    if not job.cancelled():
                        groups.setdefault(job.slice.kspace.shape, []).append(job)
                for group in groups.values():
                    self._reconstruct(group)
            except Exception as exc:  # a bug: the worker must live on, or every connection would wait forever
                log.exception("the model worker failed on a batch")
                for job in jobs:
                    if not job.done_at:
                        self._deliver(job, None, describe(exc))
            if stop:
                return

    def _reconstruct(self, jobs: list[Job]) -> None:
        import torch

        try:
            kspace = torch.from_numpy(np.stack([job.slice.kspace for job in jobs]))
            mask = torch.from_numpy(np.stack([job.slice.mask for job in jobs])[:, None, None, :])
            images = np.asarray(self.recon.reconstruct(kspace, mask), dtype=np.float32)
            if images.ndim != 3 or images.shape[0] != len(jobs):
                raise ReconstructionError(
                    f"the model returned images of shape {images.shape} for {len(jobs)} slices; expected "
                    f"({len(jobs)}, H, W)."
                )
        except Exception as exc:  # out of memory, the model's errors: reported to the client(s), never fatal
            if len(jobs) > 1:
                for job in jobs:  # find whose slice failed; the others still get their images
                    self._reconstruct([job])
                return
            if not isinstance(exc, FastreconError):
                log.exception("reconstruction failed")
            self._deliver(jobs[0], None, describe(exc))
            return
        self.batches += 1
        self.slices += len(jobs)
        for job, image in zip(jobs, images, strict=True):
            self._deliver(job, image, None)

    @staticmethod
    def _deliver(job: Job, image: np.ndarray | None, error: str | None) -> None:
        job.done_at = time.monotonic()
        try:
            job.deliver(job, image, error)
        except Exception:  # a connection's bug must not kill the worker
            log.exception("delivering a result failed")
