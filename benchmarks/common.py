"""What every benchmark shares: the machine line, recording a table in docs/BENCHMARKS.md, and
the JSON results that ``benchmarks.suite`` collects for the plots."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "BENCHMARKS.md"


def machine() -> str:
    """CPU model, cores, the bf16 matmul support that decides ``precision: auto``, Python."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (
                platform.processor() or platform.machine()
            ):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    bf16 = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    isa = f"bf16 via {'+'.join(bf16)}" if bf16 else "no bf16 matmul flags: fp32"
    return f"{cpu}, {os.cpu_count()} cores ({isa}), Python {platform.python_version()}"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min)"


def record(title: str, module: str, argv, text: str, note: str = "") -> None:
    """Append ``text`` under ``### {title}, {date}`` with the command, machine and load."""
    args = " ".join(sys.argv[1:] if argv is None else argv)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    extra = f" {note}" if note else ""
    with open(DOC, "a", encoding="utf-8") as f:
        f.write(
            f"\n### {title}, {stamp}\n\nCommand: `python -m {module} {args}`".rstrip()
            + f"  \nMachine: {machine()}; {load()} at the end.{extra}\n\n{text}\n"
        )


def write_json(path: str | None, name: str, payload: Any) -> None:
    """Save results for the plots (``--json PATH``); nothing when no path was given."""
    if not path:
        return
    out = {"benchmark": name, "machine": machine(), "load": os.getloadavg()[0], **payload}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, default=float))


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: VmHWM, the high-water mark of its own
    address space. Not ``ru_maxrss``: after fork + exec that keeps the parent's peak, so a
    child of a big process (pytest, a benchmark driver) would report its parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
