"""Magnitude images to simulate k-space from: random phantoms, natural images, real MR anatomy, user files.

Every image is ``(H, W)`` float32 in [0, 1] and deterministic for a given ``numpy.random.Generator``
state. Sources and where they come from (all offline, shipped inside pip wheels):

- ``phantom``: random ellipses, rotated, with random contrasts and textures (this module).
- ``natural``: scikit-image's bundled photographs (``skimage.data``), grayscale, cropped, flipped.
- ``mni-t1``: slices of the MNI152 2009 T1 template that ships inside nilearn's wheel, read with
  nibabel: real MR anatomy (an average of 152 brains), axial, coronal or sagittal.
- ``epi``: the real single-subject EPI brain volume in nibabel's test data (``example4d.nii.gz``,
  128x96x24, frame 0). Held out: demo-x8 never trains on it.
- ``mr``: pydicom's ``MR_small.dcm`` (64x64), see :func:`fastrecon.data.simulate.mr_image`. Held out.
- :func:`load_image_file`: a user's PNG/JPEG, DICOM, NIfTI or ``.npy`` magnitude image.

The training mix never touches the held-out sources: ``epi``, ``mr`` and the cardiac phantom seeds
the demo shows (see :data:`fastrecon.train.data.HELD_OUT_CARDIAC_SEEDS`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastrecon._features import import_optional
from fastrecon.errors import InputError, MissingDependencyError

# scikit-image photographs that are files inside its wheel (no pooch download).
NATURAL_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
    "cell",
    "microaneurysms",
    "retina",
)
MNI_T1_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
EPI_FILE = "example4d.nii.gz"
EPI_SLICES = 24


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.clip(np.nan_to_num(image.astype(np.float64)), 0.0, None)
    peak = image.max()
    return (image / peak if peak > 0 else image).astype(np.float32)


def resize_unit(image: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a 2-D image to ``size`` ``(H, W)``, scaled into [0, 1]."""
    tensor = torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32))
    if tensor.ndim != 2:
        raise InputError(f"expected a 2-D image, got shape {tuple(tensor.shape)}.")
    out = F.interpolate(tensor[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)
    out = out[0, 0].clamp_min(0)
    return (out / out.max().clamp_min(1e-12)).contiguous()


def _pad_to_aspect(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Zero-pad ``image`` (centred) so its aspect ratio is that of ``size``: resizing then keeps shapes."""
    height, width = image.shape
    target = size[0] / size[1]
    if height / width < target:
        new_h, new_w = int(round(width * target)), width
    else:
        new_h, new_w = height, int(round(height / target))
    out = np.zeros((max(new_h, height), max(new_w, width)), dtype=image.dtype)
    top, left = (out.shape[0] - height) // 2, (out.shape[1] - width) // 2
    out[top : top + height, left : left + width] = image
    return out


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random transpose and flips (the eight symmetries of the square)."""
    if rng.random() < 0.5:
        image = image.T
    if rng.random() < 0.5:
        image = image[::-1]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cutoff: float) -> np.ndarray:
    """Gaussian-lowpassed white noise, zero mean and unit peak; ``cutoff`` in cycles per image."""
    height, width = shape
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(height)[:, None] * height
    fx = np.fft.fftfreq(width)[None, :] * width
    field = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-(fy**2 + fx**2) / (2 * cutoff**2))).real
    field -= field.mean()
    return field / max(float(np.abs(field).max()), 1e-12)


def random_phantom(size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A random "anatomy": a body ellipse holding 4-14 rotated ellipses of random intensity, each with
    its own texture (smooth noise, stripes or fine grain), smooth shading and a random gamma contrast."""
    height, width = size
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    edge = rng.uniform(1.0, 3.0) * 2.0 / min(height, width)

    def ellipse(centre: np.ndarray, radii: np.ndarray, angle: float) -> np.ndarray:
        (cy, cx), (ry, rx) = centre, radii
        c, s = math.cos(angle), math.sin(angle)
        y, x = yy - cy, xx - cx
        u, v = c * x + s * y, -s * x + c * y
        dist = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        return 0.5 * (1.0 - np.tanh((dist - 1.0) / max(edge / min(rx, ry), 1e-6)))

    # Draw order matters (reproducible training data): centre, radii, then angle.
    body = ellipse(rng.uniform(-0.1, 0.1, 2), rng.uniform(0.6, 0.95, 2), rng.uniform(0, math.pi))
    image = rng.uniform(0.1, 0.6) * body
    for _ in range(int(rng.integers(4, 15))):
        blob = ellipse(rng.uniform(-0.6, 0.6, 2), rng.uniform(0.04, 0.4, 2), rng.uniform(0, math.pi)) * body
        level: float | np.ndarray = rng.uniform(0.0, 1.0)
        kind = rng.integers(4)
        if kind == 1:
            level = level * (1 + 0.3 * _smooth_field(size, rng, rng.uniform(2, 12)))
        elif kind == 2:
            freq, phase, angle = rng.uniform(4, 20), rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
            level = level * (0.8 + 0.2 * np.cos(freq * (math.cos(angle) * xx + math.sin(angle) * yy) + phase))
        elif kind == 3:
            level = level * (1 + 0.15 * _smooth_field(size, rng, rng.uniform(20, 50)))
        image = image * (1 - blob) + level * blob
    image = image * (1 + rng.uniform(0, 0.3) * _smooth_field(size, rng, 1.5))
    image = _unit(image) ** rng.uniform(0.6, 1.6)
    return torch.from_numpy(_unit(image))


@functools.cache
def _natural(name: str) -> np.ndarray:
    data = import_optional("skimage.data")
    image = np.asarray(getattr(data, name)(), dtype=np.float64)
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])  # skimage's rgb2gray weights
    return _unit(image)


def natural_image(size: tuple[int, int], rng: np.random.Generator, name: str | None = None) -> torch.Tensor:
    """A grayscale scikit-image photograph (random one unless ``name``): random crop (40-100 % of each
    side), flips, gamma, and half of the time a soft elliptic support (MR images have a dark background)."""
    name = name or str(rng.choice(NATURAL_IMAGES))
    if name not in NATURAL_IMAGES:
        raise InputError(f"unknown natural image {name!r}; choose one of {', '.join(NATURAL_IMAGES)}.")
    image = _natural(name)
    height, width = image.shape
    ch, cw = (int(side * rng.uniform(0.4, 1.0)) for side in (height, width))
    top, left = int(rng.integers(height - ch + 1)), int(rng.integers(width - cw + 1))
    crop = _augment(image[top : top + ch, left : left + cw], rng)
    out = resize_unit(crop, size).numpy() ** rng.uniform(0.7, 1.5)
    if rng.random() < 0.5:
        yy, xx = np.meshgrid(np.linspace(-1, 1, size[0]), np.linspace(-1, 1, size[1]), indexing="ij")
        ry, rx = rng.uniform(0.6, 0.95, 2)
        dist = np.sqrt((yy / ry) ** 2 + (xx / rx) ** 2)
        out = out * 0.5 * (1 - np.tanh((dist - 1) / 0.03))
    return torch.from_numpy(_unit(out))


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package's folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"{package} is not installed; it ships the image file {parts[-1]} (pip install 'fastrecon[dev]')."
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise InputError(f"{path} is missing from this {package} installation.")
    return path


def _read_nifti(path: Path) -> np.ndarray:
    nibabel = import_optional("nibabel")
    return np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def mni_t1_volume() -> np.ndarray:
    """The MNI152 2009 T1 template (197, 233, 189) float32 in [0, 1], from nilearn's wheel (nibabel reads it)."""
    return _unit(_read_nifti(_package_file("nilearn", "datasets", "data", MNI_T1_FILE)))


def mni_t1_slice(size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A random axial, coronal or sagittal slice through the middle 70 % of the MNI152 T1 head, cropped to the
    head with a random margin, flipped at random and resized to ``size``."""
    volume = mni_t1_volume()
    axis = int(rng.integers(3))
    mass = (volume > 0.05).sum(axis=tuple(a for a in range(3) if a != axis))
    occupied = np.flatnonzero(mass > 0.05 * mass.max())
    lo, hi = occupied[0], occupied[-1]
    index = int(rng.integers(lo + int(0.15 * (hi - lo)), hi - int(0.15 * (hi - lo)) + 1))
    image = np.rot90(np.take(volume, index, axis=axis))
    rows, cols = np.flatnonzero(image.max(1) > 0.02), np.flatnonzero(image.max(0) > 0.02)
    if rows.size and cols.size:
        margin = int(rng.integers(2, 20))
        image = image[
            max(rows[0] - margin, 0) : rows[-1] + margin + 1, max(cols[0] - margin, 0) : cols[-1] + margin + 1
        ]
    image = _augment(image, rng)
    return resize_unit(_pad_to_aspect(image, size), size)


@functools.lru_cache(maxsize=1)
def epi_volume() -> np.ndarray:
    """nibabel's real EPI brain volume ``example4d.nii.gz``, frame 0: (128, 96, 24) float32 in [0, 1]."""
    return _unit(_read_nifti(_package_file("nibabel", "tests", "data", EPI_FILE))[..., 0])


def epi_slice(index: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Axial slice ``index`` (0..23) of :func:`epi_volume`, shown as the scanner's (96, 128) image or resized."""
    if not 0 <= index < EPI_SLICES:
        raise InputError(f"EPI slice index must be in 0..{EPI_SLICES - 1}, got {index}.")
    image = np.rot90(epi_volume()[:, :, index])
    return resize_unit(image, size or (image.shape[0], image.shape[1]))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".npy")


def load_image_file(path: str | Path, *, slice_index: int | None = None) -> torch.Tensor:
    """A magnitude image ``(H, W)`` float32 in [0, 1] from a user's file.

    PNG/JPEG/TIFF (colour turned to grayscale), DICOM (``.dcm``, first frame), NIfTI (``.nii``,
    ``.nii.gz``: ``slice_index`` along the last spatial axis, the middle one by default; first volume of
    a 4-D file) or ``.npy`` (2-D real or complex: its magnitude; 3-D: ``slice_index`` of the first axis).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist.")
    name = path.name.lower()
    suffix = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise InputError(f"cannot read {path}: unknown suffix; expected one of {', '.join(IMAGE_SUFFIXES)}.")
    if suffix == ".npy":
        image = np.abs(np.load(path, allow_pickle=False))
        if image.ndim == 3:
            image = image[image.shape[0] // 2 if slice_index is None else slice_index]
    elif suffix == ".dcm":
        pydicom = import_optional("pydicom")
        image = np.asarray(pydicom.dcmread(str(path)).pixel_array, dtype=np.float32)
        if image.ndim == 3:
            image = image[0]
    elif suffix in (".nii", ".nii.gz"):
        image = _read_nifti(path)
        while image.ndim > 3:
            image = image[..., 0]
        if image.ndim == 3:
            image = np.rot90(image[:, :, image.shape[2] // 2 if slice_index is None else slice_index])
    else:
        import matplotlib.image

        image = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
        if image.ndim == 3:
            image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 8:
        raise InputError(
            f"{path} holds an image of shape {image.shape}; expected a 2-D magnitude image of at least 8x8."
        )
    if not np.isfinite(image).all() or image.max() <= 0:
        raise InputError(f"{path}: the image must be finite with a positive maximum.")
    return torch.from_numpy(_unit(image))
