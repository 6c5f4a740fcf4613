"""bench/gpu_suite.sh: every command bounded, and each device call (default order, each part) below 600 s."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "bench" / "gpu_suite.sh"
DEVICE_CALL_S = 600
GRACE_S = 5  # timeout -k 5: a step that ignores SIGTERM gets 5 s more before SIGKILL

_LIMIT = re.compile(r"^\s*(?:\d+\)\s*)?(?:step|model_bench \S+|timeout -k (\d+)) (\d+)\b", re.M)


def _limits(text: str) -> list[int]:
    """Worst-case seconds of every bounded command in ``text`` (its limit plus its kill grace)."""
    out = []
    for match in _LIMIT.finditer(text):
        grace = int(match.group(1)) if match.group(1) else GRACE_S
        out.append(int(match.group(2)) + grace)
    return out


def _sections() -> tuple[str, str, dict[str, str]]:
    text = SUITE.read_text()
    preamble, _, rest = text.partition('if [ -z "$part" ]; then')
    default, _, parts_text = rest.partition("else")
    parts = dict(re.findall(r"^    (\d+)\)(.*?);;", parts_text, re.M | re.S))
    return preamble, default, parts


def test_steps_are_bounded_and_the_suite_stays_offline() -> None:
    text = SUITE.read_text()
    assert "export PIP_NO_INDEX=1" in text
    assert 'timeout -k 5 "$limit"' in text  # every step() runs under timeout -k
    assert 'out="${OUT:-' in text  # everything lands in $OUT on the device machine
    # pip and the machine record run under timeout too (counted in the preamble's sum below)
    assert all("timeout -k" in line for line in text.splitlines() if "pip install" in line)


def test_default_order_fits_one_device_call() -> None:
    preamble, default, _ = _sections()
    head = _limits(preamble)
    assert len(head) == 3, head  # wheels, project, machine record
    steps = _limits(default)
    assert len(steps) == 4, steps  # smoke, DC, model subset, GPU tests
    assert sum(head) + sum(steps) < DEVICE_CALL_S, (head, steps)


@pytest.mark.parametrize("part", [str(p) for p in range(1, 9)])
def test_each_part_fits_one_device_call(part: str) -> None:
    preamble, _, parts = _sections()
    assert part in parts, sorted(parts)
    steps = _limits(parts[part])
    assert steps, parts[part]
    assert sum(_limits(preamble)) + sum(steps) < DEVICE_CALL_S, (part, steps)


def test_list_and_usage() -> None:
    listed = subprocess.run(["bash", str(SUITE), "--list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 8
    bad = subprocess.run(["bash", str(SUITE), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage" in bad.stdout
