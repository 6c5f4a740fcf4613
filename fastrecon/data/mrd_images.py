"""MRD images from reconstructions: ``ismrmrd.Image`` with the geometry of the acquisitions and the
header's ``reconSpace``, written to / read from MRD files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrecon._files import atomic_write, check_output
from fastrecon.data.mrd import SLICE_FIELDS, MRDSlice
from fastrecon.data.mrd_header import Encoding, _ismrmrd, header_xml
from fastrecon.errors import InputError


def _phase_kept(width: int, encoding: Encoding) -> int:
    """Phase-encode pixels that cover the ``reconSpace`` field of view y. The W columns span the
    ``encodedSpace`` field of view y, so phase oversampling is the ratio of the two fields of view (with a
    recon matrix larger than the acquired one, scanners' interpolation, the matrices alone would keep the
    oversampled margins under the smaller field of view); without a usable ratio the matrices decide."""
    encoded_fov, recon_fov = encoding.encoded_fov_mm[1], encoding.fov_mm[1]
    if encoded_fov > 0 and recon_fov > 0 and encoded_fov > recon_fov:
        return min(width, max(1, round(encoding.encoded[1] * recon_fov / encoded_fov)))
    return min(encoding.recon[1], width)


def crop_to_recon(image: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Centre-crop ``(..., H, W)`` images to the header's ``reconSpace``: H to its x where that is smaller
    (readout oversampling is already gone), W to the columns covering its field of view y (phase
    oversampling), else to its y where that is smaller. Nothing is interpolated."""
    height, width = image.shape[-2:]
    rx, ry = min(encoding.recon[0], height), _phase_kept(width, encoding)
    top, left = (height - rx) // 2, (width - ry) // 2
    return image[..., top : top + rx, left : left + ry]


def to_mrd_images(
    images: np.ndarray | Sequence[np.ndarray],
    slices: Sequence[MRDSlice],
    encoding: Encoding,
    *,
    meta: dict[str, Any] | None = None,
    series_index: int = 1,
    first_index: int = 1,
    dtype: str = "float32",
) -> list[Any]:
    """MRD magnitude images from reconstructions.

    Args:
        images: ``(N, H, W)`` magnitudes (H readout, W phase encode), one per slice; centre-cropped
            here to ``reconSpace``.
        slices: the :class:`MRDSlice` each image came from (indices, geometry).
        encoding: the header's encoding (``reconSpace`` field of view).
        meta: extra MRD meta attributes (model, backend, precision, latency, ...).
        series_index: ``image_series_index`` of every image; first_index: ``image_index`` of the first.
        dtype: ``"float32"`` (values as reconstructed) or ``"uint16"`` (scaled so the largest value is
            4095, as python-ismrmrd-server's examples do for scanners that display 12-bit images).

    Returns:
        ``ismrmrd.Image`` list: ``matrix_size = (x, y, 1)`` with x the readout; ``field_of_view`` from
        ``reconSpace``; position, read/phase/slice directions, table position and time stamps from the
        acquisition nearest the k-space centre; slice/contrast/phase/repetition/set/average indices.
    """
    m = _ismrmrd()
    if dtype not in ("float32", "uint16"):
        raise InputError(f"image dtype {dtype!r} is not supported; expected 'float32' or 'uint16'.")
    if len(images) != len(slices):
        raise InputError(f"{len(images)} images for {len(slices)} slices; expected one image per slice.")
    out = []
    for offset, (image, item) in enumerate(zip(images, slices, strict=True)):
        magnitude = np.abs(np.asarray(image)).astype(np.float32)
        magnitude = crop_to_recon(magnitude, encoding)
        window: tuple[float, float]
        if dtype == "uint16":
            peak = float(magnitude.max()) if magnitude.size else 0.0
            scale = 4095.0 / peak if peak > 0 else 0.0
            data: np.ndarray = np.round(magnitude * scale).astype(np.uint16)
            window = (2048.0, 4096.0)
        else:
            data = magnitude
            peak = float(magnitude.max()) if magnitude.size else 0.0
            window = (peak / 2, peak)
        # MRD images are (y, x) in memory with x the readout: our (H readout, W phase) transposed.
        array = np.ascontiguousarray(data.T)
        head = item.head if item.head is not None else m.AcquisitionHeader()
        mrd = m.Image.from_array(array, acquisition=head, transpose=False)
        mrd.image_type = m.IMTYPE_MAGNITUDE
        mrd.image_series_index = int(series_index)
        mrd.image_index = int(first_index + offset)
        mrd.field_of_view = tuple(float(v) for v in encoding.fov_mm)
        for name in SLICE_FIELDS:
            setattr(mrd, name, int(getattr(item.key, name)))
        attributes = {
            "DataRole": "Image",
            "ImageProcessingHistory": ["FASTRECON"],
            "WindowCenter": f"{window[0]:.6g}",
            "WindowWidth": f"{window[1]:.6g}",
            "Keep_image_geometry": 1,
        }
        attributes.update({k: v for k, v in (meta or {}).items() if v is not None})
        mrd.meta = m.Meta(attributes)
        out.append(mrd)
    return out


def write_mrd_images(
    path: str | Path,
    images: Iterable[Any],
    *,
    header: Any = None,
    group: str = "dataset",
    image_group: str = "image_0",
    inputs: Sequence[str | Path] = (),
    overwrite: bool = False,
) -> Path:
    """Write ``ismrmrd.Image`` objects to an MRD file (``/<group>/<image_group>``), with the header when
    given. Written to a temporary file beside ``path`` and renamed; never over one of ``inputs``; an
    existing file only with ``overwrite``. Returns the path."""
    m = _ismrmrd()
    path = check_output(path, inputs=inputs, overwrite=overwrite)
    images = list(images)
    if not images:
        raise InputError("no images to write; expected at least one ismrmrd.Image.")
    with (
        atomic_write(path, overwrite=overwrite) as temp,
        m.Dataset(str(temp), group, create_if_needed=True) as dataset,
    ):
        if header is not None:
            dataset.write_xml_header(header_xml(header).encode("utf-8"))
        for image in images:
            dataset.append_image(image_group, image)
    return path


def read_mrd_images(path: str | Path, *, group: str = "dataset", image_group: str = "image_0") -> list[Any]:
    """The ``ismrmrd.Image`` objects of an MRD image file (as written by :func:`write_mrd_images`)."""
    m = _ismrmrd()
    with m.Dataset(str(path), group, create_if_needed=False, mode="r") as dataset:
        return [dataset.read_image(image_group, i) for i in range(dataset.number_of_images(image_group))]


def image_array(image: Any) -> np.ndarray:
    """An MRD image's pixels as fastrecon's ``(H readout, W phase)`` (the inverse of the transpose
    :func:`to_mrd_images` applies)."""
    data = np.asarray(image.data)
    return np.ascontiguousarray(data[0, 0].T)


__all__ = ["crop_to_recon", "image_array", "read_mrd_images", "to_mrd_images", "write_mrd_images"]
