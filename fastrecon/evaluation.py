"""Evaluate a model on a folder of fastMRI / CMRxRecon files against zero-filled input.

One row per volume (file) and method; the protocol decides what a row's numbers mean (fastMRI: per
volume; CMRxRecon: per 2-D image, averaged over the file's images). Means over volumes close the table.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastrecon._files import atomic_write
from fastrecon.data.cmrxrecon import inspect_cmrxrecon
from fastrecon.data.dataset import SliceDataset, SliceSample
from fastrecon.data.fastmri import inspect_fastmri
from fastrecon.errors import InputError
from fastrecon.metrics import MetricResult, Protocol, center_crop, cmrx_run4ranking, evaluate, mean_results
from fastrecon.physics import ifft2c, rss
from fastrecon.physics.masks import AnyMaskFunc, create_mask_for_mask_type

PROTOCOL_ALIASES: dict[str, Protocol] = {
    "fastmri": "fastmri",
    "cmrxrecon": "cmrxrecon-2023",
    "cmrxrecon-2023": "cmrxrecon-2023",
    "cmrxrecon-2024": "cmrxrecon-2024",
    "cmrxrecon-2025": "cmrxrecon-2025",
}


@dataclass
class VolumeRow:
    file: str
    method: str
    ssim: float
    psnr: float
    nmse: float
    count: int


@dataclass
class EvaluationReport:
    protocol: Protocol
    model: str
    settings: dict[str, Any]
    rows: list[VolumeRow] = field(default_factory=list)
    means: dict[str, MetricResult] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"protocol {self.protocol}: mean over {len(self.rows) // max(len(self.means), 1)} volume(s)"]
        lines.append(f"  {'method':<20} {'SSIM':>7} {'PSNR dB':>8} {'NMSE':>8}")
        for method, m in self.means.items():
            lines.append(f"  {method:<20} {m.ssim:>7.4f} {m.psnr:>8.2f} {m.nmse:>8.4f}")
        return "\n".join(lines)

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """``<out>.csv`` (one row per volume and method, then the means) and ``<out>.json``; existing ones are replaced."""
        out = Path(out)
        csv_path, json_path = out.with_suffix(".csv"), out.with_suffix(".json")
        # Temporary files + rename: a failure never leaves a half-written report.
        with atomic_write(csv_path) as temp, open(temp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "method", "ssim", "psnr", "nmse", "count"])
            for row in self.rows:
                writer.writerow([row.file, row.method, row.ssim, row.psnr, row.nmse, row.count])
            for method, m in self.means.items():
                writer.writerow(["MEAN", method, m.ssim, m.psnr, m.nmse, m.count])
        payload = {
            "protocol": self.protocol,
            "model": self.model,
            "settings": self.settings,
            "means": {method: m.as_dict() for method, m in self.means.items()},
            "volumes": [asdict(row) for row in self.rows],
        }
        with atomic_write(json_path) as temp:
            temp.write_text(json.dumps(payload, indent=2))
        return csv_path, json_path


def _fastmri_crop(dataset: SliceDataset, name: str, size: torch.Size) -> tuple[int, int] | None:
    """fastMRI's evaluation crop: the header's reconSpace matrix (e.g. 320x320 for 640x368 knee k-space),
    then ``evaluate.py``'s square ``(W_target, W_target)``; None when the image is already that size."""
    entry = next(e for e in dataset.entries if e.name == name)
    height, width = int(size[0]), int(size[1])
    if entry.kind == "fastmri":
        recon = inspect_fastmri(entry.path).header.recon_size
        if recon is not None:
            height, width = min(recon[0], height), min(recon[1], width)
    side = min(width, height)
    return None if (side, side) == tuple(size) else (side, side)


def _fastmri_max(dataset: SliceDataset, name: str) -> float | None:
    """The data range fastMRI scores a volume with: its file's ``max`` attribute (``VarNetDataTransform``
    passes ``attrs["max"]`` to validation's SSIM and PSNR); None when the file has none (then the target
    volume's maximum, as ``evaluate.py``) or is not a fastMRI file."""
    entry = next(e for e in dataset.entries if e.name == name)
    if entry.kind != "fastmri":
        return None
    value = inspect_fastmri(entry.path).attrs.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _frames_and_slices(dataset: SliceDataset, name: str, count: int) -> tuple[int, int]:
    """``(T, Z)`` of a file's ``count`` items: a CMRxRecon file's own frames and slices (items are
    frame-major, ``n = t * Z + z``); a fastMRI volume is one frame of ``count`` slices."""
    entry = next(e for e in dataset.entries if e.name == name)
    if entry.kind == "cmrx":
        info = inspect_cmrxrecon(entry.path, dataset.cmrx_key)
        return info.num_frames, info.num_slices
    return 1, count


def _volumes(dataset: SliceDataset, limit: int | None) -> Iterator[list[SliceSample]]:
    """Slices grouped by file, in the dataset's order."""
    start = 0
    for number, entry in enumerate(dataset.entries):
        if limit is not None and number >= limit:
            return
        yield [dataset[i] for i in range(start, start + entry.num_items)]
        start += entry.num_items


def evaluate_folder(
    recon: Any,
    data: str | Path,
    *,
    acceleration: float,
    center_fraction: float = 0.08,
    mask_type: str = "equispaced_fraction",
    protocol: str = "fastmri",
    limit_files: int | None = None,
    mask_func: AnyMaskFunc | None = None,
    cmrx_ranking: bool = False,
    all_frames: bool = False,
    show_progress: bool = True,
    coil_compress: bool = False,
) -> EvaluationReport:
    """Score ``recon`` (a :class:`fastrecon.Reconstructor`) and zero-filled input on every file under ``data``.

    Fully sampled files are undersampled with ``mask_type`` (seeded per file, as fastMRI does);
    already-undersampled files keep their sampling but have no reference to score against. Under the
    ``fastmri`` protocol, target and images are centre-cropped as fastMRI scores them: to the header's
    reconstruction matrix, then square (``evaluate.py``); the data range of SSIM and PSNR is the file's ``max``
    attribute (the volume's maximum, as fastMRI's validation uses it), or the cropped target volume's maximum
    when the file has none. The model gets the mask function's ACS count (``num_low_frequencies``).
    With ``cmrx_ranking`` (CMRxRecon protocols), only what the challenge ranks is scored: the central two
    slices, the first three frames (every frame with ``all_frames``, for mapping) and the ranking crop
    (:func:`fastrecon.metrics.cmrx_run4ranking`). ``coil_compress``: volumes with more coils than the model
    accepts are compressed to its coil count (the zero-filled row keeps every coil).
    """
    from tqdm import tqdm

    if protocol not in PROTOCOL_ALIASES:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOL_ALIASES)}.")
    resolved: Protocol = PROTOCOL_ALIASES[protocol]
    mask_func = mask_func or create_mask_for_mask_type(mask_type, [center_fraction], [acceleration])
    dataset = SliceDataset(data, mask_func)
    settings = {
        "data": str(data),
        "acceleration": acceleration,
        "center_fraction": center_fraction,
        "mask_type": mask_type,
        "cmrx_ranking": cmrx_ranking,
        "all_frames": all_frames,
        "coil_compress": coil_compress,
        "weights": str(getattr(recon, "weights_path", None)),
        "backend": getattr(recon, "backend", "eager"),
        "device": str(getattr(recon, "device", "cpu")),
        "torch": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    report = EvaluationReport(protocol=resolved, model=recon.config.name, settings=settings)
    per_method: dict[str, list[MetricResult]] = {"zero-filled": [], recon.config.name: []}
    total = len(dataset.entries) if limit_files is None else min(limit_files, len(dataset.entries))
    for slices in tqdm(
        _volumes(dataset, limit_files), total=total, desc="evaluate", disable=not show_progress
    ):
        name = slices[0].fname
        if not all(s.has_target for s in slices):
            raise InputError(
                f"{name} is already undersampled and has no fully sampled reference to score against."
            )
        kspace = torch.stack([s.masked_kspace for s in slices])
        mask = slices[0].mask
        target = torch.stack([s.target for s in slices])
        images = {
            "zero-filled": rss(ifft2c(kspace), dim=1),
            # The mask function's ACS count, as fastMRI's VarNet validation passes it to the model.
            recon.config.name: recon.reconstruct(
                kspace, mask, num_low_frequencies=slices[0].num_low_frequencies, coil_compress=coil_compress
            ),
        }
        if cmrx_ranking and resolved != "fastmri":
            frames, slices_ = _frames_and_slices(dataset, name, target.shape[0])
            target = cmrx_run4ranking(
                target.reshape(frames, slices_, *target.shape[-2:]), all_frames=all_frames
            )
            images = {
                method: cmrx_run4ranking(
                    image.reshape(frames, slices_, *image.shape[-2:]), all_frames=all_frames
                )
                for method, image in images.items()
            }
        crop = _fastmri_crop(dataset, name, target.shape[-2:]) if resolved == "fastmri" else None
        maxval = _fastmri_max(dataset, name) if resolved == "fastmri" else None
        if crop is not None:
            target = center_crop(target, crop)
        for method, image in images.items():
            if crop is not None:
                image = center_crop(image, crop)
            result = evaluate(target, image, resolved, maxval=maxval)
            per_method[method].append(result)
            report.rows.append(VolumeRow(name, method, result.ssim, result.psnr, result.nmse, result.count))
    if not report.rows:
        raise InputError(f"no volumes evaluated under {data}.")
    # One vote per volume, as fastMRI's evaluate.py and the CMRxRecon scorers average per-file means
    # (fastMRI volumes have count 1, so this only changes CMRxRecon, whose count is images per file).
    report.means = {method: mean_results(results, weighted=False) for method, results in per_method.items()}
    return report
