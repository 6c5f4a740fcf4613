"""Running one job over the ranks of ``torchrun`` (or alone): join the process group only when there are
several ranks, pick each rank's device, and share small Python objects between ranks.

``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``LOCAL_WORLD_SIZE``); without them
everything here is a no-op for a single process. CUDA ranks use nccl and ``cuda:LOCAL_RANK``; CPU
ranks use gloo.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastrecon.errors import InputError

# Ranks wait for the slowest one at the end; a shard can take hours, so the collective timeout is long.
DIST_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: str | None


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not a whole number.") from None


def rank_device(requested: str | None, local_rank: int) -> str | None:
    """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA exists and no device (or plain ``cuda``)
    was asked for; otherwise what was asked for (None lets :func:`fastrecon.load` choose)."""
    from fastrecon._features import has_cuda

    if requested in (None, "cuda") and has_cuda():
        import torch

        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return requested


@contextlib.contextmanager
def distributed(requested_device: str | None) -> Iterator[DistInfo]:
    """Join the process group of ``torchrun`` when ``WORLD_SIZE`` > 1 (nccl for CUDA ranks, gloo for
    CPU); a group that already exists is used and left open. Yields this rank's place and device."""
    world = env_int("WORLD_SIZE", 1)
    local_rank = env_int("LOCAL_RANK", 0)
    device = rank_device(requested_device, local_rank)
    if world <= 1:
        yield DistInfo(0, 1, 0, device)
        return
    import torch
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise InputError(
                f"WORLD_SIZE={world} asks for {world} ranks, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set; start the ranks "
                "with torchrun (e.g. torchrun --nproc_per_node 2 -m fastrecon.cli ...), or unset WORLD_SIZE."
            )
        cuda = device is not None and torch.device(device).type == "cuda"
        if cuda and device is not None:
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=DIST_TIMEOUT)
        created = True
    try:
        yield DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)
    finally:
        if created:
            dist.destroy_process_group()


def broadcast(value: Any, info: DistInfo) -> Any:
    if info.world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: Any, info: DistInfo) -> list[Any]:
    if info.world == 1:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * info.world
    dist.all_gather_object(gathered, value)
    return gathered
