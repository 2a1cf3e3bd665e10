"""Facts about the machine this process runs on, that the load plan and the engines share."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
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
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class CpuClass:
    """What kind of CPU this is, for the arithmetic the engines can use on it (docs/performance.md, "CPU
    classes"). int8 pays only where the CPU multiplies int8 without 16-bit saturation: VNNI or AMX on x86,
    the dot-product or i8mm instructions on arm64. On an x86 CPU with AVX2 only, ONNX Runtime's int8 ran at
    0.54x fp32 (MiniLM, a first-generation AMD EPYC).

    Example:
        >>> CpuClass("x86_64", ("avx2", "fma")).name
        'x86 AVX2'
        >>> CpuClass("x86_64", ("avx2", "fma")).int8_units
        False
        >>> CpuClass("arm64", ("asimd", "dotprod", "i8mm")).name
        'arm64 dotprod i8mm'
    """

    arch: str  # "x86_64", "arm64" or what platform.machine() says
    features: tuple[str, ...]  # the ones that decide the class, lower case as Linux names them

    @property
    def name(self) -> str:
        have = set(self.features)
        if self.arch == "x86_64":
            if have & {"amx_int8", "amx_bf16"}:
                return "x86 AMX"
            if "avx512_bf16" in have:
                return "x86 AVX-512 bf16"
            if have & {"avx512_vnni", "avx_vnni"}:
                return "x86 AVX-512 VNNI" if "avx512f" in have else "x86 AVX-VNNI"
            if "avx512f" in have:
                return "x86 AVX-512"
            return "x86 AVX2" if "avx2" in have else "x86 (no AVX2)"
        if self.arch == "arm64":
            extras = [f for f in ("dotprod", "i8mm", "bf16", "sve") if f in have]
            return " ".join(["arm64", *extras])
        return self.arch

    @property
    def int8_units(self) -> bool:
        """int8 dot products without 16-bit saturation: where int8 can beat fp32."""
        return bool(set(self.features) & {"avx512_vnni", "avx_vnni", "amx_int8", "dotprod", "i8mm"})

    @property
    def bf16_units(self) -> bool:
        return bool(set(self.features) & {"avx512_bf16", "amx_bf16", "bf16"})


X86_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
# numpy reads CPUID itself; under QEMU user mode (`qemu-x86_64 -cpu Haswell`) /proc/cpuinfo still describes the
# host, CPUID the emulated CPU. What numpy knows is taken from it; the rest from /proc/cpuinfo, kept only where
# numpy confirms what it implies (AMX CPUs all have AVX512-BF16; AVX-VNNI ones AVX2).
_NUMPY_NAMES = {
    "avx2": "AVX2",
    "fma": "FMA3",
    "avx512f": "AVX512F",
    "avx512_vnni": "AVX512VNNI",
    "avx512_bf16": "AVX512BF16",
}
_IMPLIES = {"amx_int8": "avx512_bf16", "amx_bf16": "avx512_bf16", "avx_vnni": "avx2"}
# arm64 HWCAP bits (Linux arch/arm64/include/uapi/asm/hwcap.h), read with getauxval: QEMU user mode answers
# for the emulated CPU there, and /proc/cpuinfo may not list them.
_AT_HWCAP, _AT_HWCAP2 = 16, 26
_ARM_HWCAP = {"asimd": (_AT_HWCAP, 1), "dotprod": (_AT_HWCAP, 20), "sve": (_AT_HWCAP, 22)}
_ARM_HWCAP2 = {"i8mm": (_AT_HWCAP2, 13), "bf16": (_AT_HWCAP2, 14)}


@functools.lru_cache(maxsize=1)
def cpu_class() -> CpuClass:
    """This CPU's class (cached for the process)."""
    arch = platform.machine().lower()
    if arch in ("x86_64", "amd64"):
        return CpuClass("x86_64", _x86_features(_cpuinfo_flags(), _numpy_cpu_features()))
    if arch in ("aarch64", "arm64"):
        return CpuClass("arm64", _arm_features())
    return CpuClass(arch, ())


def _x86_features(flags: set[str], cpuid: dict[str, bool] | None) -> tuple[str, ...]:
    found = []
    # Where /proc/cpuinfo and CPUID disagree on what both can say, /proc/cpuinfo describes another CPU (QEMU's
    # host): nothing is taken from it (an AVX-VNNI host's flag made an emulated Haswell "x86 AVX-VNNI").
    emulated = cpuid is not None and any(bool(cpuid.get(n)) != (f in flags) for f, n in _NUMPY_NAMES.items())
    for feature in X86_FEATURES:
        if cpuid is not None and feature in _NUMPY_NAMES:
            present = bool(cpuid.get(_NUMPY_NAMES[feature]))
        else:
            present = feature in flags and not emulated
        if present:
            found.append(feature)
    kept = [f for f in found if f not in _IMPLIES or _IMPLIES[f] in found]
    return tuple(kept)


def _cpuinfo_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
    except OSError:
        pass
    return set()


def _numpy_cpu_features() -> dict[str, bool] | None:
    try:  # numpy's own CPUID reading: not a public API, so anything may be missing
        from numpy._core._multiarray_umath import __cpu_features__
    except Exception:
        return None
    return dict(__cpu_features__)


def _arm_features() -> tuple[str, ...]:
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        words = {key: int(getauxval(key)) for key in (_AT_HWCAP, _AT_HWCAP2)}
    except (OSError, AttributeError):  # not glibc, not Linux: fall back to /proc/cpuinfo's names
        flags = _cpuinfo_flags()
        names = {"asimd": "asimd", "dotprod": "asimddp", "sve": "sve", "i8mm": "i8mm", "bf16": "bf16"}
        return tuple(f for f, linux in names.items() if linux in flags)
    bits = {**_ARM_HWCAP, **_ARM_HWCAP2}
    return tuple(name for name, (key, bit) in bits.items() if words[key] >> bit & 1)


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
