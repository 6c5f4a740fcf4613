"""The few exceptions fastrecon raises.

Every error derives from :class:`FastreconError`; the ones about bad input also derive from the
built-in ``ValueError`` / ``TypeError`` so generic ``except ValueError`` handlers keep working.
"""

from __future__ import annotations


class FastreconError(Exception):
    """Base class of every error raised on purpose by fastrecon."""


class InputError(FastreconError, ValueError):
    """An input array has the wrong shape, values or sampling pattern."""


class InputTypeError(FastreconError, TypeError):
    """An input has the wrong type or dtype (e.g. real data where complex k-space is expected)."""


class UnknownNameError(FastreconError, KeyError):
    """A model, backend, precision or encoder name that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class WeightsError(FastreconError):
    """Weights are missing, corrupt, do not match the architecture or fail their checksum."""


class DataFormatError(FastreconError, ValueError):
    """A data file is not in the format it claims to be, is truncated, or lacks the expected keys."""


class ConfigError(FastreconError, ValueError):
    """A model config (registered, or embedded in a checkpoint) has a field of the wrong type or out of range."""


class OutputExistsError(FastreconError, FileExistsError):
    """An output path is one of the inputs, is a folder, or exists and replacing it was not asked for."""


class MissingDependencyError(FastreconError, ImportError):
    """An optional dependency (Triton, CuPy, TensorRT, ...) is needed but not installed."""


class BackendUnavailableError(FastreconError, RuntimeError):
    """A backend or device was asked for that this machine cannot provide."""


def close_matches(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """Format 'Available: ...' with the closest matches first, for unknown-name errors."""
    import difflib

    # Compare case-insensitively ("CLIP-X8" -> 'clip-x8'); an exact match up to case comes first.
    by_lower = {choice.lower(): choice for choice in choices}
    folded = str(name).lower()
    close = [by_lower[c] for c in difflib.get_close_matches(folded, list(by_lower), n=n, cutoff=0.5)]
    if folded in by_lower and by_lower[folded] in close:
        close.remove(by_lower[folded])
        close.insert(0, by_lower[folded])
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"Available: {', '.join(sorted(choices))}.{hint}"


class TrainingError(FastreconError, FloatingPointError):
    """Training diverged (non-finite loss) or cannot continue."""


class ReconstructionError(FastreconError, FloatingPointError):
    """A reconstruction produced a non-finite image from finite input (a numerical failure)."""
