"""The shared model worker: batches slices waiting together (across clients), isolates a failing slice."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import torch

from fastrecon.data.mrd import MRDSlice, SliceKey
from fastrecon.errors import InputError
from fastrecon.serve.worker import Job, ModelWorker


class FakeRecon:
    """Records batch sizes; refuses a batch holding a slice whose k-space is all zeros."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.config = SimpleNamespace(name="fake")

    def reconstruct(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(kspace.shape[0]))
        if bool((kspace.abs().flatten(1).amax(1) == 0).any()):
            raise InputError("k-space is all zeros (after masking); there is nothing to reconstruct.")
        return kspace.abs().sum(1)


def _slice(value: float, shape: tuple[int, int, int] = (2, 4, 4)) -> MRDSlice:
    return MRDSlice(
        kspace=np.full(shape, value, np.complex64), mask=np.ones(shape[-1], bool), key=SliceKey(), head=None
    )


def test_batches_waiting_slices_and_isolates_failures() -> None:
    recon = FakeRecon()
    worker = ModelWorker(recon, batch_size=8)
    results: dict[int, tuple[object, object]] = {}
    done = threading.Event()

    def deliver(index: int):  # type: ignore[no-untyped-def]
        def call(job: Job, image: object, error: object) -> None:
            results[index] = (image, error)
            if len(results) == 5:
                done.set()

        return call

    # Submitted before the worker starts: they are all waiting together, as from several clients.
    for index, value in enumerate([1.0, 2.0, 0.0, 3.0]):
        worker.submit(Job(_slice(value), deliver(index)))
    worker.submit(Job(_slice(5.0, (2, 6, 4)), deliver(4)))  # another shape: its own batch
    worker.start()
    assert done.wait(30)
    worker.stop(timeout=30)
    # One batch of 4 failed on the zero slice, then each was retried alone; the other shape ran apart.
    assert recon.calls[:1] == [4] and sorted(recon.calls[1:]) == [1, 1, 1, 1, 1]
    for index, value in [(0, 1.0), (1, 2.0), (3, 3.0)]:
        image, error = results[index]
        assert error is None
        np.testing.assert_allclose(image, np.full((4, 4), 2 * value, np.float32))
    assert results[2][0] is None and "all zeros" in str(results[2][1])
    assert results[4][1] is None and np.asarray(results[4][0]).shape == (6, 4)


class BrokenRecon(FakeRecon):
    """Returns one image too few for its first batch (a backend bug), then behaves."""

    def reconstruct(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        images = super().reconstruct(kspace, mask)
        return images[1:] if len(self.calls) == 1 else images


def test_worker_survives_a_model_that_returns_too_few_images() -> None:
    worker = ModelWorker(BrokenRecon(), batch_size=1)
    results: list[tuple[object, object]] = []
    done = threading.Event()

    def deliver(job: Job, image: object, error: object) -> None:
        results.append((image, error))
        if len(results) == 2:
            done.set()

    worker.submit(Job(_slice(1.0), deliver))
    worker.submit(Job(_slice(2.0), deliver))  # after the bad batch: the worker must still be there
    worker.start()
    assert done.wait(30)
    worker.stop(timeout=30)
    assert results[0][0] is None and "returned images of shape (0, 4, 4) for 1 slices" in str(results[0][1])
    assert results[1][1] is None
    np.testing.assert_allclose(results[1][0], np.full((4, 4), 4.0, np.float32))  # type: ignore[arg-type]
