"""``Reconstructor.stream``: images in order, equal to ``reconstruct()``, lazy, batching only what is ready."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import fastrecon
from fastrecon.errors import InputError
from tests.helpers import (
    load_unregistered,
    masked_kspace,
    seed_nonzero_heads,
    tiny_vit_config,
    zero_filled,
)


@pytest.fixture(scope="module")
def demo() -> fastrecon.Reconstructor:
    return fastrecon.load("demo-x8", device="cpu")


@pytest.fixture(scope="module")
def vit() -> fastrecon.Reconstructor:
    recon = load_unregistered(tiny_vit_config("test-stream-vit"), device="cpu")
    assert seed_nonzero_heads(recon.model) == 2
    return recon


def _close(actual: Any, expected: Any) -> None:
    """fp32-vs-fp32: a batch may run the networks with another batch size than a single item."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


class _Spy:
    """Records the batch size of every forward pass."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.static_batch, self.batches = runner, runner.static_batch, []

    def __call__(self, prepared: Any, output: Any) -> torch.Tensor:
        self.batches.append(prepared.batch)
        return self.runner(prepared, output)  # type: ignore[no-any-return]

    def info(self) -> dict[str, Any]:
        return self.runner.info()  # type: ignore[no-any-return]


@pytest.mark.parametrize("which", ["demo", "vit"])
def test_equals_reconstruct(which: str, request: pytest.FixtureRequest) -> None:
    recon: fastrecon.Reconstructor = request.getfixturevalue(which)
    kspace, mask = masked_kspace(num=5, coils=4, height=64, width=48, accel=4, acs=8, seed=1)
    items: list[Any] = [
        kspace[0],  # mask inferred from the zero pattern
        (kspace[1], mask),
        {"kspace": kspace[2].numpy(), "mask": mask.numpy()},
        (kspace[3], mask.expand(64, 48)),  # a 2-D mask: another layout, another batch
        kspace[4],
    ]
    spy = _Spy(recon.runner)
    spied = dataclasses.replace(recon, runner=spy)  # type: ignore[arg-type]
    out = list(spied.stream(items, batch_size=3))
    assert len(out) == 5 and isinstance(out[2], np.ndarray) and max(spy.batches) <= 3
    whole = recon.reconstruct(kspace, mask)
    for i, image in enumerate(out):
        _close(image, whole[i])
    for i in (0, 3):  # inferred and 2-D masks, each alone
        _close(
            out[i],
            recon.reconstruct(*items[i]) if isinstance(items[i], tuple) else recon.reconstruct(items[i]),
        )
    assert float((whole - zero_filled(kspace, mask)).abs().max()) > 1e-3 * float(whole.max())


def test_mixed_shapes_libraries_and_keys(demo: fastrecon.Reconstructor) -> None:
    a, mask_a = masked_kspace(num=2, coils=4, height=64, width=48, seed=2)
    b, mask_b = masked_kspace(num=2, coils=6, height=48, width=40, accel=3, acs=10, seed=3)
    items = [
        {"kspace": a[0], "mask": mask_a, "key": ("slice", 0)},
        {"kspace": b[0].numpy(), "key": ("slice", 1)},
        {"kspace": a[1], "key": ("slice", 2)},
        {"kspace": b[1].to(torch.complex128), "mask": mask_b, "key": ("slice", 3)},
    ]
    out = list(demo.stream(items))
    assert [key for key, _ in out] == [("slice", i) for i in range(4)]
    assert [tuple(image.shape) for _, image in out] == [(64, 48), (48, 40), (64, 48), (48, 40)]
    assert isinstance(out[1][1], np.ndarray) and out[3][1].dtype == torch.float64
    _close(out[0][1], demo.reconstruct(a[0], mask_a))
    _close(out[1][1], demo.reconstruct(b[0].numpy()))
    _close(out[2][1], demo.reconstruct(a[1]))
    _close(out[3][1], demo.reconstruct(b[1].to(torch.complex128), mask_b))


def test_lazy_on_an_endless_source(demo: fastrecon.Reconstructor) -> None:
    kspace, mask = masked_kspace(num=1, coils=4, height=32, width=32, seed=4)
    pulled = itertools.count()
    last = [0]

    def endless() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for n in itertools.count():
            last[0] = next(pulled)
            yield kspace[0] * (1 + n), mask

    stream = demo.stream(endless(), batch_size=2)
    out = list(itertools.islice(stream, 3))
    assert len(out) == 3
    _close(out[2], 3 * out[0])  # scale-equivariant: the third item is three times the first
    assert last[0] <= 3 + 2 + 1  # read ahead: the queue (batch_size) and the one in the reader's hand
    stream.close()
    time.sleep(0.3)
    stopped = last[0]
    time.sleep(0.3)
    assert last[0] == stopped  # the reader stopped with the stream


def test_first_image_before_the_next_item(demo: fastrecon.Reconstructor) -> None:
    """A slow source: the first image comes while the source still holds back its second item."""
    kspace, mask = masked_kspace(num=2, coils=4, height=32, width=32, seed=5)
    released = threading.Event()
    waited: list[bool] = []

    def scanner() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield kspace[0], mask
        waited.append(released.wait(timeout=30))
        yield kspace[1], mask

    stream = demo.stream(scanner(), batch_size=8)
    first = next(stream)
    released.set()
    rest = list(stream)
    assert waited == [True] and len(rest) == 1
    _close(first, demo.reconstruct(kspace[0], mask))


def test_errors_come_after_the_images_before_them(demo: fastrecon.Reconstructor) -> None:
    kspace, mask = masked_kspace(num=2, coils=4, height=32, width=32, seed=6)
    stream = demo.stream([(kspace[0], mask), kspace[:1], (kspace[1], mask)])
    _close(next(stream), demo.reconstruct(kspace[0], mask))
    with pytest.raises(InputError, match=r"stream item 1: k-space has shape \(1, 4, 32, 32\)"):
        next(stream)

    def failing() -> Iterator[torch.Tensor]:
        yield kspace[0]
        raise OSError("the scanner went away")

    stream = demo.stream(failing())
    _close(next(stream), demo.reconstruct(kspace[0]))
    with pytest.raises(OSError, match="went away"):
        next(stream)
    with pytest.raises(InputError, match="mapping with keys"):
        list(demo.stream([{"data": kspace[0]}]))
    with pytest.raises(InputError, match="batch_size"):
        demo.stream([], batch_size=0)
    assert list(demo.stream([])) == []
    with pytest.raises(fastrecon.errors.InputTypeError, match="not an iterable"):
        demo.stream(42)  # type: ignore[arg-type]


def test_a_bad_item_inside_a_batch_costs_only_its_own_image(demo: fastrecon.Reconstructor) -> None:
    """Item 1 has no ACS block (its data is bad, not its shape): it shares the batch of items 0 and 2, yet
    item 0's image still comes first and the error names item 1."""
    kspace, mask = masked_kspace(num=3, coils=4, height=32, width=32, seed=7)
    no_acs = torch.zeros_like(mask)
    no_acs[::8] = True
    no_acs[16] = False
    items = [(kspace[0], mask), (kspace[1], no_acs), (kspace[2], mask)]
    stream = demo.stream(items, batch_size=3)
    _close(next(stream), demo.reconstruct(kspace[0], mask))
    with pytest.raises(InputError, match=r"stream item 1: .*autocalibration"):
        next(stream)


def test_an_item_error_names_the_item(demo: fastrecon.Reconstructor) -> None:
    kspace, mask = masked_kspace(num=2, coils=4, height=32, width=32, seed=8)
    with pytest.raises(InputError, match=r"stream item 1: 1-D mask has 5 entries"):
        list(demo.stream([(kspace[0], mask), (kspace[1], mask[:5])]))


def test_four_dimensional_masks_of_one_item(demo: fastrecon.Reconstructor) -> None:
    """A 4-D mask of one item: (1, 1, 1, W) is its column mask; one per coil or per several slices is
    refused with the item named (was a RuntimeError from a reshape)."""
    kspace, mask = masked_kspace(num=1, coils=4, height=32, width=32, seed=9)
    _close(next(demo.stream([(kspace[0], mask.reshape(1, 1, 1, 32))])), demo.reconstruct(kspace[0], mask))
    for bad in (
        mask.reshape(1, 1, 1, 32).expand(1, 4, 32, 32),
        mask.reshape(1, 1, 1, 32).expand(2, 1, 1, 32),
    ):
        with pytest.raises(InputError, match=r"stream item 0: mask has shape \((1, 4, 32|2, 1, 1), 32\)"):
            next(demo.stream([(kspace[0], bad.clone())]))
