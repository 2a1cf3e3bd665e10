"""Facts about the machine this process runs on, that the load plan and the engines share."""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Physical cores this process may run on: ONNX Runtime's intra-op threads gain nothing from
    hyper-threads, and a container's CPU affinity can be smaller than the machine."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
                cores.add((physical, core))
    except OSError:
        pass
    return max(1, min(allowed, len(cores) or allowed))


def cpu_name() -> str:
    """The CPU's model name as Linux reports it (e.g. 'AMD EPYC'); what a cached measurement depends on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def package_versions(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """{name: installed version} for the named distributions that are installed (absent ones are left out).

    Example:
        >>> list(package_versions(["numpy", "no-such-package"]))
        ['numpy']
    """
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def release_freed_memory() -> None:
    """Hand memory freed by Python and ONNX Runtime back to the system (glibc keeps freed heap pages mapped): after
    a first load closed the candidates it measured, RSS otherwise stayed 180 MB above a cached load's (t int8).
    A closed model is freed as its last reference goes (it holds no reference cycle), so no gc pass is needed."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        pass
