"""``fastrecon train``: argument parsing and dataset assembly around :func:`fastrecon.train.loop.train`."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastrecon.errors import InputError


def add_train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a registered model (paper recipe) and write a registry-ready checkpoint",
        description="SSIM loss, Adam 1e-3, lr x0.1 after epoch 40, 50 epochs, early stopping (patience 5), "
        "frozen encoder. Resumes from <out>.resume.pt. Multi-GPU: torchrun --nproc_per_node N -m fastrecon.cli train ...",
    )
    p.add_argument("--model", required=True, help="registered model name (fastrecon list)")
    p.add_argument(
        "--data",
        required=True,
        help="folder of fastMRI .h5 / CMRxRecon .mat files, 'simulated' (cardiac phantoms) or 'varied' "
        "(phantoms, natural images, MNI152 T1 slices, random coils and masks: the demo-x8 recipe)",
    )
    p.add_argument("--val-data", default=None, help="validation folder (default: every 10th file of --data)")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument(
        "--encoder-weights", default=None, help="local open_clip/timm checkpoint of the frozen encoder"
    )
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-step-epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.add_argument("--accel", type=float, default=None, help="default: the model's contract")
    p.add_argument("--center-fraction", type=float, default=0.08)
    p.add_argument("--mask-type", default=None, help="default: the model's contract mask type")
    p.add_argument("--sim-train", type=int, default=512, help="simulated training slices per epoch")
    p.add_argument("--sim-val", type=int, default=32, help="simulated validation slices")
    p.add_argument("--sim-size", type=int, default=128)
    p.add_argument("--sim-coils", type=int, default=8)
    p.add_argument("--storage-dtype", default=None, choices=[None, "float16", "bfloat16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--no-amp", action="store_true")
    return p


def run_train(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import Dataset

    from fastrecon.data.dataset import SliceDataset, SliceSample
    from fastrecon.physics.masks import create_mask_for_mask_type
    from fastrecon.registry import get_config
    from fastrecon.train.data import SimulatedSliceDataset
    from fastrecon.train.loop import TrainSettings, train

    config = get_config(args.model)
    accel = args.accel or config.contract.acceleration
    mask_type = args.mask_type or config.contract.mask_type.replace("-", "_")
    if mask_type == "cmrxrecon_uniform":
        mask_type = "cmrx_uniform"
    mask_func = create_mask_for_mask_type(mask_type, [args.center_fraction], [accel])
    train_data: Dataset[SliceSample]
    val_data: Dataset[SliceSample]
    shuffle = True
    if args.data == "varied":
        from fastrecon.train.data import VariedSliceDataset

        # Consecutive items share a matrix size and coil count: batches are formed in order.
        train_data = VariedSliceDataset(args.sim_train, seed=args.seed, group=args.batch_size)
        val_data = VariedSliceDataset(args.sim_val, seed=10**6 + args.seed, group=args.batch_size)
        shuffle = False
    elif args.data == "simulated":
        size = (args.sim_size, args.sim_size)
        train_data = SimulatedSliceDataset(
            args.sim_train, mask_func, size=size, num_coils=args.sim_coils, seed=args.seed * 1_000_003
        )
        # Validation slices use seeds far from the training ones, so they are held out.
        val_data = SimulatedSliceDataset(
            args.sim_val, mask_func, size=size, num_coils=args.sim_coils, seed=10**9 + args.seed
        )
    else:
        root = Path(args.data)
        if args.val_data:
            train_data, val_data = SliceDataset(root, mask_func), SliceDataset(args.val_data, mask_func)
        else:
            files = sorted(
                p for p in root.rglob("*") if p.suffix in (".h5", ".mat") and "_mask" not in p.stem
            )
            if len(files) < 2:
                raise InputError(
                    f"{root} holds {len(files)} data file(s); give --val-data or at least 2 files to split."
                )
            val_files = files[::10]
            train_files = [f for f in files if f not in val_files]
            train_data, val_data = SliceDataset(train_files, mask_func), SliceDataset(val_files, mask_func)
    settings = TrainSettings(
        epochs=args.epochs,
        lr=args.lr,
        lr_step_epochs=args.lr_step_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        max_steps_per_epoch=args.max_steps_per_epoch,
        amp=not args.no_amp,
        seed=args.seed,
        storage_dtype=args.storage_dtype,
        shuffle=shuffle,
    )
    device = torch.device(args.device) if args.device else None
    result = train(
        config,
        train_data,
        val_data,
        args.out,
        settings=settings,
        encoder_weights=args.encoder_weights,
        resume=not args.no_resume,
        device=device,
    )
    if result.sha256:
        print(
            f"best epoch {result.best_epoch} (val SSIM loss {result.best_val_loss:.4f}); wrote {result.checkpoint}"
        )
        print(f"sha256 {result.sha256}")
    return 0
