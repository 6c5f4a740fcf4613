"""Data: fastMRI and CMRxRecon readers, a writer for reconstructions, simulation, a slice dataset.

Readers return numpy arrays in fastrecon's layout: k-space ``(N, C, H, W)`` complex64 with W the
phase-encode (masked) axis. The dataset returns torch tensors.
"""

from fastrecon.data.cmrxrecon import (
    CMRxInfo,
    CMRxVolume,
    inspect_cmrxrecon,
    read_cmrxrecon,
    read_cmrxrecon_mask,
)
from fastrecon.data.dataset import SliceDataset, SliceSample
from fastrecon.data.fastmri import (
    FastMRIHeader,
    FastMRIInfo,
    FastMRIVolume,
    inspect_fastmri,
    parse_ismrmrd_header,
    read_fastmri,
    write_fastmri,
    write_reconstruction,
)
from fastrecon.data.simulate import (
    Simulated,
    birdcage_maps,
    cardiac_phantom,
    shepp_logan_image,
    simulate_cine,
    simulate_multicoil,
    simulate_slice,
    smooth_phase,
)

__all__ = [
    "CMRxInfo",
    "CMRxVolume",
    "FastMRIHeader",
    "FastMRIInfo",
    "FastMRIVolume",
    "Simulated",
    "SliceDataset",
    "SliceSample",
    "birdcage_maps",
    "cardiac_phantom",
    "inspect_cmrxrecon",
    "inspect_fastmri",
    "parse_ismrmrd_header",
    "read_cmrxrecon",
    "read_cmrxrecon_mask",
    "read_fastmri",
    "shepp_logan_image",
    "simulate_cine",
    "simulate_multicoil",
    "simulate_slice",
    "smooth_phase",
    "write_fastmri",
    "write_reconstruction",
]
