"""In-process streaming: :meth:`fastrecon.Reconstructor.stream` (slices or frames in, images out, in order).

How items are batched: a background thread reads the caller's iterable into a bounded queue. The
consumer waits for one item, then takes the items that are **already waiting** (never waiting for
more), up to ``batch_size``, as long as they can share one forward pass: same k-space shape (coils
after compression included), dtype, array library and device, and masks of the same layout (columns
or 2-D). An item that does not fit starts the next batch. So a slow source (a scanner) gets each frame
reconstructed as soon as it arrives, a fast source (a file) gets full batches, and at most
``batch_size + 1`` items are read ahead of the images handed out: the iterable is never read to its end
first (an endless generator works).

Each output equals ``reconstruct()`` of its item alone (to fp32 rounding: a batch may run the
networks with another batch size). Masks are per item (given, or inferred from the item's zero
pattern); coil compression, when asked for, is per item (each frame its own virtual coils).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fastrecon._arrays import Origin, as_complex_kspace, from_torch, to_torch
from fastrecon.errors import FastreconError, InputError
from fastrecon.physics import infer_mask

if TYPE_CHECKING:
    from fastrecon.api import Reconstructor

_POLL_S = 0.05  # how often a reader blocked on a full queue checks whether the stream was closed


@dataclass
class _Item:
    kspace: torch.Tensor  # (1, C, H, W) complex, after coil compression
    mask: torch.Tensor  # (1, 1, 1 or H, W) bool, on kspace's device
    origin: Origin
    key: Any
    keyed: bool
    index: int  # its place in the stream (for error messages)

    @property
    def group(self) -> tuple[object, ...]:
        """Items with equal ``group`` can run in one forward pass."""
        return (
            tuple(self.kspace.shape[1:]),
            self.kspace.dtype,
            self.kspace.device,
            self.origin,
            int(self.mask.shape[-2]),
        )


class _End:
    pass


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_EMPTY = object()


class _Reader:
    """Reads ``items`` on a daemon thread into a bounded queue; ``close()`` makes it stop at its next put."""

    def __init__(self, items: Iterable[Any], size: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._iterator = iter(items)
        self._thread = threading.Thread(target=self._run, name="fastrecon-stream-reader", daemon=True)
        self._thread.start()

    def _put(self, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._iterator:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there in order
            self._put(_Failed(exc))
            return
        self._put(_End())

    def get(self) -> object:
        return self._queue.get()

    def get_nowait(self) -> object:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return _EMPTY

    def close(self) -> None:
        self._stop.set()


def _unpack(index: int, raw: Any) -> tuple[Any, Any, Any, bool]:
    """``(kspace, mask, key, keyed)`` of one stream item: an array, ``(kspace, mask)``, or a mapping with
    ``"kspace"`` and optional ``"mask"`` and ``"key"``."""
    if isinstance(raw, Mapping):
        if "kspace" not in raw:
            raise InputError(
                f"stream item {index} is a mapping with keys {sorted(map(str, raw))}; expected 'kspace' "
                "(and optionally 'mask' and 'key')."
            )
        return raw["kspace"], raw.get("mask"), raw.get("key"), "key" in raw
    if isinstance(raw, tuple):
        if len(raw) != 2:
            raise InputError(
                f"stream item {index} is a tuple of {len(raw)}; expected (kspace, mask), an array, or a mapping."
            )
        return raw[0], raw[1], None, False
    return raw, None, None, False


def _named(error: FastreconError, index: int) -> FastreconError:
    """``error`` with the stream item it is about in front of its message (a stream has many items)."""
    message = str(error)
    if message.startswith(f"stream item {index}"):
        return error
    named = type(error)(f"stream item {index}: {message}")
    named.__cause__ = error.__cause__
    return named


def _item(recon: Reconstructor, index: int, raw: Any, coil_compress: bool) -> _Item:
    try:
        return _checked_item(recon, index, raw, coil_compress)
    except FastreconError as exc:
        raise _named(exc, index) from None


def _checked_item(recon: Reconstructor, index: int, raw: Any, coil_compress: bool) -> _Item:
    kspace, mask, key, keyed = _unpack(index, raw)
    tensor, origin = to_torch(kspace, f"stream item {index} (k-space)")
    tensor = as_complex_kspace(tensor)
    if tensor.ndim != 3:
        raise InputError(
            f"stream item {index}: k-space has shape {tuple(tensor.shape)}; expected one slice or frame (C, H, W)."
        )
    batch = tensor.unsqueeze(0)
    _, _, height, width = batch.shape
    mask_t = infer_mask(batch) if mask is None else recon._mask_tensor(mask, batch.shape)
    if mask_t.ndim < 4:  # (W,) or (H, W), checked against the item's size
        mask_t = mask_t.reshape(1, 1, -1 if mask_t.ndim == 2 else 1, width)
    elif tuple(mask_t.shape[:2]) != (1, 1):
        raise InputError(
            f"mask has shape {tuple(mask_t.shape)}; one slice or frame takes one mask shared by its coils: "
            f"(W,), (H, W), (1, 1, 1, W) or (1, 1, H, W) with (H, W) = ({height}, {width})."
        )
    rows = height if mask_t.shape[-2] != 1 else 1
    mask_t = mask_t.to(device=batch.device, dtype=torch.bool).expand(1, 1, rows, width).contiguous()
    batch = recon._fit_coils(batch, mask_t, coil_compress)
    return _Item(batch, mask_t, origin, key, keyed, index)


def stream(
    recon: Reconstructor,
    items: Iterable[Any],
    *,
    batch_size: int,
    return_complex: bool,
    num_low_frequencies: int | None,
    coil_compress: bool,
) -> Iterator[Any]:
    """The generator behind :meth:`fastrecon.Reconstructor.stream` (arguments already checked there)."""
    reader = _Reader(items, batch_size)
    index = 0
    held: _Item | None = None
    try:
        while True:
            if held is not None:
                group, held = [held], None
            else:
                first = reader.get()
                if isinstance(first, _End):
                    return
                if isinstance(first, _Failed):
                    raise first.error
                group = [_item(recon, index, first, coil_compress)]
                index += 1
            # Take what is already waiting (never wait for more) while it fits the batch.
            failure: BaseException | None = None
            finished = False
            while len(group) < batch_size:
                nxt = reader.get_nowait()
                if nxt is _EMPTY:
                    break
                if isinstance(nxt, _End):
                    finished = True
                    break
                if isinstance(nxt, _Failed):
                    failure = nxt.error
                    break
                try:
                    item = _item(recon, index, nxt, coil_compress)
                except Exception as exc:  # raised after the images of the items before it
                    failure = exc
                    break
                index += 1
                if item.group != group[0].group:
                    held = item
                    break
                group.append(item)
            images: Any = None
            if len(group) > 1:
                # One item's bad data (e.g. no ACS block) fails the batch: then redo it item by item below.
                with contextlib.suppress(FastreconError):
                    images = recon.reconstruct(
                        torch.cat([item.kspace for item in group]),
                        torch.cat([item.mask for item in group]),
                        return_complex=return_complex,
                        num_low_frequencies=num_low_frequencies,
                    )
            if images is not None:
                for item, image in zip(group, images, strict=True):
                    out = from_torch(image, item.origin)
                    yield (item.key, out) if item.keyed else out
            else:  # the items before a bad one get their images; its error names it
                for item in group:
                    try:
                        image = recon.reconstruct(
                            item.kspace,
                            item.mask,
                            return_complex=return_complex,
                            num_low_frequencies=num_low_frequencies,
                        )[0]
                    except FastreconError as exc:
                        raise _named(exc, item.index) from None
                    out = from_torch(image, item.origin)
                    yield (item.key, out) if item.keyed else out
            if failure is not None:
                raise failure
            if finished:  # (held is None here: an item that did not fit ends the inner loop first)
                return
    finally:
        reader.close()
