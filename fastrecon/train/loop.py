"""The paper's training recipe, kept apart from the inference path.

SSIM loss, Adam (lr 1e-3, no weight decay), learning rate x0.1 after epoch 40, 50 epochs, early
stopping on the validation loss with patience 5, frozen encoder. Resumable (``<out>.resume.pt``,
read back with ``weights_only=True``), tqdm progress, bf16 autocast on CUDA, multi-GPU through
``torchrun`` (PyTorch DDP). The best epoch is written as a registry-ready safetensors checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fastrecon._files import atomic_write
from fastrecon.data.dataset import SliceSample
from fastrecon.errors import InputError, TrainingError, WeightsError
from fastrecon.metrics import SSIMLoss
from fastrecon.models import build_model
from fastrecon.models.unrolled import UnrolledNet
from fastrecon.physics import acs_count_masks, ifft2c, rss
from fastrecon.registry import ModelConfig
from fastrecon.weights import load_state_dict_strict, save_checkpoint


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are the paper's recipe."""

    epochs: int = 50
    lr: float = 1e-3
    lr_step_epochs: int = 40
    lr_gamma: float = 0.1
    patience: int = 5
    batch_size: int = 1
    num_workers: int = 0
    max_steps_per_epoch: int | None = None  # cap for quick runs and tests
    amp: bool = True  # bf16 autocast, CUDA only
    seed: int = 0
    storage_dtype: str | None = None  # e.g. "float16" to halve the checkpoint
    shuffle: bool = True  # False for datasets whose consecutive items form a batch (VariedSliceDataset)


@dataclass
class TrainResult:
    checkpoint: Path
    sha256: str
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def normalise_batch(batch: SliceSample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale each sample by the maximum of its zero-filled RSS image (the models are scale-equivariant;
    the fixed scale makes the loss and Adam's steps comparable across samples).

    Returns ``(kspace, mask, target, data_range)`` with kspace ``(B, C, H, W)``, mask ``(B, 1, 1, W)``.
    """
    kspace, mask, target = batch.masked_kspace, batch.mask, batch.target
    scale = rss(ifft2c(kspace), dim=1).flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    kspace = kspace / scale.reshape(-1, 1, 1, 1)
    target = target / scale.reshape(-1, 1, 1)
    data_range = target.flatten(1).amax(dim=1)
    return kspace, mask.reshape(mask.shape[0], 1, 1, -1), target, data_range


class _Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self, device: torch.device | None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        if device is None:
            device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume.pt")


def batch_acs(mask: torch.Tensor, num_low_frequencies: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """The ACS columns ``(B, 1, 1, W)`` of a batch from each sample's count (the mask function's
    ``num_low_frequencies``, or the block found in a stored mask), as fastMRI's VarNet training passes
    ``num_low_frequencies`` to the model instead of searching the mask for it."""
    counts = [int(n) for n in num_low_frequencies]
    if len(counts) != mask.shape[0]:
        raise InputError(
            f"{len(counts)} ACS counts for a batch of {mask.shape[0]} masks; expected one per sample."
        )
    rows = [acs_count_masks(mask[i : i + 1], n) for i, n in enumerate(counts)]
    return torch.cat(rows).reshape(mask.shape[0], 1, 1, -1)


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: SSIMLoss,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    settings: TrainSettings,
    desc: str,
    show: bool,
) -> float:
    from tqdm import tqdm

    training = optimizer is not None
    model.train(training)
    total, count = 0.0, 0
    steps = (
        len(loader)
        if settings.max_steps_per_epoch is None
        else min(len(loader), settings.max_steps_per_epoch)
    )
    autocast = settings.amp and device.type == "cuda"
    with torch.set_grad_enabled(training), tqdm(total=steps, desc=desc, disable=not show, leave=False) as bar:
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            kspace, mask, target, data_range = (t.to(device) for t in normalise_batch(batch))
            acs = batch_acs(mask, batch.num_low_frequencies)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                output = model(kspace, mask, acs)
            loss = loss_fn(output.float(), target, data_range)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{desc}: loss became {loss.item()} at step {step}; lower the learning rate."
                )
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += float(loss.item()) * kspace.shape[0]
            count += kspace.shape[0]
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def train(
    config: ModelConfig,
    train_data: Dataset[SliceSample],
    val_data: Dataset[SliceSample],
    out: str | Path,
    *,
    settings: TrainSettings | None = None,
    encoder_weights: str | None = None,
    resume: bool = True,
    device: torch.device | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``config``'s model and write the best epoch to ``out`` (safetensors, config embedded).

    With ``resume`` and an existing ``<out>.resume.pt`` from the same config, training continues
    where it stopped. Under ``torchrun`` each process trains on its shard (DDP); rank 0 writes.
    """
    settings = settings or TrainSettings()
    out = Path(out)
    sizes = (len(train_data), len(val_data))  # type: ignore[arg-type]
    if min(sizes) == 0:
        raise InputError(
            f"training needs non-empty train and validation sets (got {sizes[0]} and {sizes[1]} items)."
        )
    env = _Distributed(device)
    torch.manual_seed(settings.seed)
    model: UnrolledNet = build_model(config, encoder_weights=encoder_weights).to(env.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.lr_step_epochs, gamma=settings.lr_gamma
    )
    start_epoch, best_val, best_epoch, bad_epochs = 0, math.inf, -1, 0
    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    state_path = _resume_path(out)
    if resume and state_path.is_file():
        saved = torch.load(str(state_path), map_location="cpu", weights_only=True)
        if saved.get("config") != config.to_json():
            raise WeightsError(
                f"{state_path} belongs to a different model config; delete it or pass resume=False."
            )
        load_state_dict_strict(model, saved["model"], str(state_path))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, best_val, best_epoch, bad_epochs = (
            saved["epoch"],
            saved["best_val"],
            saved["best_epoch"],
            saved["bad_epochs"],
        )
        history = saved["history"]
        best_state = saved["best_model"]
        if env.main and show_progress:
            print(f"resuming from {state_path} at epoch {start_epoch}")

    net: nn.Module = model
    if env.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    train_sampler: DistributedSampler[SliceSample] | None = None
    val_sampler: DistributedSampler[SliceSample] | None = None
    if env.world > 1:
        train_sampler = DistributedSampler(train_data, shuffle=True, seed=settings.seed)
        val_sampler = DistributedSampler(val_data, shuffle=False)
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader = DataLoader(
        train_data,
        batch_size=settings.batch_size,
        shuffle=train_sampler is None and settings.shuffle,
        sampler=train_sampler,
        num_workers=settings.num_workers,
        generator=generator,
    )
    val_loader = DataLoader(
        val_data, batch_size=settings.batch_size, sampler=val_sampler, num_workers=settings.num_workers
    )
    loss_fn = SSIMLoss().to(env.device)
    stopped_early = False
    show = env.main and show_progress
    if bad_epochs >= settings.patience:
        stopped_early = True  # a resumed run that had already stopped early
        start_epoch = settings.epochs
    for epoch in range(start_epoch, settings.epochs):
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        began = time.perf_counter()
        train_loss = env.mean(
            _run_epoch(
                net, train_loader, loss_fn, env.device, optimizer, settings, f"epoch {epoch + 1} train", show
            )
        )
        val_loss = env.mean(
            _run_epoch(net, val_loader, loss_fn, env.device, None, settings, f"epoch {epoch + 1} val", show)
        )
        scheduler.step()
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - began,
            }
        )
        if val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if show:
            print(
                f"epoch {epoch + 1}/{settings.epochs}: train SSIM loss {train_loss:.4f}, val {val_loss:.4f} (best {best_val:.4f} at epoch {best_epoch})"
            )
        if env.main:
            # Atomic: a crash while saving never leaves a half-written resume file or loses the last one.
            with atomic_write(state_path) as temp:
                torch.save(
                    {
                        "config": config.to_json(),
                        "model": model.state_dict(),
                        "best_model": best_state,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1,
                        "best_val": best_val,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                    },
                    str(temp),
                )
        if bad_epochs >= settings.patience:
            stopped_early = True
            if show:
                print(f"early stopping: no validation improvement for {settings.patience} epochs")
            break
    digest = ""
    if env.main:
        if best_state is None:
            raise WeightsError("training ran no epoch (epochs already done?); nothing to save.")
        model.load_state_dict(best_state)
        meta = {
            "training": json.dumps(
                {"settings": dataclasses.asdict(settings), "history": history, "best_epoch": best_epoch}
            )
        }
        dtype = getattr(torch, settings.storage_dtype) if settings.storage_dtype else None
        digest = save_checkpoint(model, config, out, dtype=dtype, metadata=meta)
    env.close()
    return TrainResult(
        checkpoint=out,
        sha256=digest,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        history=history,
        stopped_early=stopped_early,
    )
