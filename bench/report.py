"""Tables from committed result files (what the README's benchmark table is generated with).

    python -m fastrecon.bench.report bench/results/*.json --markdown

Every row keeps its device and date; error rows stay in the table with their error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fastrecon.bench._harness import Row, format_table, read_rows

MODEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("weights", "weights"),
    ("shape", "shape"),
    ("backend", "backend"),
    ("precision", "prec."),
    ("batch", "batch"),
    ("slices_per_s", "slices/s"),
    ("speedup", "vs eager fp32"),
    ("lat_b1_p50_ms", "b1 p50 ms"),
    ("lat_b1_p90_ms", "b1 p90 ms"),
    ("lat_b1_p99_ms", "b1 p99 ms"),
    ("lat_b1_runs", "b1 runs"),
    ("compile_s", "compile s"),
    ("peak_mem_mb", "peak MB"),
    ("parity_psnr_db", "PSNR dB"),
    ("parity_passed", "parity"),
    ("frac_of_floor", "of floor"),
    ("device_name", "device"),
    ("torch_threads", "threads"),
    ("load_avg", "load avg"),
    ("date_utc", "date (UTC)"),
    ("error", "error"),
)


def _cell(key: str, value: object) -> str:
    if value is None or value == "":
        return "-" if key != "error" else ""
    if key == "parity_passed":
        return "pass" if value else "FAIL"
    if key == "date_utc":
        return str(value)[:16].replace("T", " ")
    if key == "device_name":
        return str(value).replace("CPU: ", "")
    if isinstance(value, float):
        if key == "speedup":
            return f"{value:.2f}x"
        if key == "frac_of_floor":
            return f"{100 * value:.1f} %"
        if key == "parity_psnr_db":
            return "inf (identical)" if value == float("inf") else f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    text = str(value).replace("|", "/")
    return text if len(text) <= 90 else text[:87] + "..."


def markdown(rows: Sequence[Row], columns: Sequence[tuple[str, str]] = MODEL_COLUMNS) -> str:
    """A Markdown table of ``rows`` (columns that no row has are left out)."""
    present = [(k, title) for k, title in columns if any(k in r for r in rows)]
    lines = ["| " + " | ".join(title for _, title in present) + " |"]
    lines.append("|" + "|".join("---" for _ in present) + "|")
    for r in rows:
        lines.append("| " + " | ".join(_cell(k, r.get(k)) for k, _ in present) + " |")
    return "\n".join(lines)


START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def replace_between_markers(path: Path, table: str) -> None:
    """Replace what lies between :data:`START` and :data:`END` in ``path`` with ``table``."""
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{path}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def load(paths: Sequence[str | Path]) -> list[Row]:
    rows: list[Row] = []
    for path in paths:
        for row in read_rows(path):
            row.setdefault("source", Path(path).name)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastrecon.bench.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("files", nargs="+", help="result files (.json or .csv)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (default: plain text)")
    parser.add_argument(
        "--readme", metavar="PATH", help=f"also put the Markdown table between {START} and {END} in PATH"
    )
    args = parser.parse_args(argv)
    rows = load(args.files)
    if args.readme:
        replace_between_markers(Path(args.readme), markdown(rows))
    if args.markdown:
        print(markdown(rows))
    else:
        print(format_table(rows, [k for k, _ in MODEL_COLUMNS if any(k in r for r in rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
