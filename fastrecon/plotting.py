"""Pictures of results people look at (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fastrecon._files import atomic_write


def _np(image: torch.Tensor | np.ndarray) -> np.ndarray:
    return image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)


def save_comparison_png(
    target: torch.Tensor | np.ndarray,
    zero_filled: torch.Tensor | np.ndarray,
    reconstruction: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    titles: tuple[str, str, str] = ("target", "zero-filled", "reconstruction"),
    suptitle: str = "",
) -> Path:
    """target | zero-filled | reconstruction | |error| x5, one shared grey scale; returns the path.

    An existing file at ``path`` is replaced (atomically, through a temporary file beside it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt, zf, rec = _np(target), _np(zero_filled), _np(reconstruction)
    vmax = float(np.percentile(gt, 99.5)) or 1.0
    error = np.abs(rec - gt)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), constrained_layout=True)
    panels = [(gt, titles[0]), (zf, titles[1]), (rec, titles[2]), (error * 5, "|reconstruction - target| x5")]
    for ax, (image, title) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    path = Path(path)
    try:
        # Temporary file + rename: a failure never leaves half a PNG or loses the previous one.
        with atomic_write(path) as temp:
            fig.savefig(temp, dpi=110, format=path.suffix.lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    return path
