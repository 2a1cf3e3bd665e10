"""Keeping a local Ray on loopback: a network namespace whose only interface is `lo`.

Ray 2.60 binds its GCS, raylets and workers to every interface (`::`) on a machine with a network address,
whatever `ray.init(_node_ip_address="127.0.0.1")` says (checked with `ss -ltnp` and psutil): a "local" Ray is
reachable from the network. In a network namespace with only the loopback interface, Ray finds no other
address and binds to 127.0.0.1, and nothing outside the namespace could reach it anyway. An unprivileged user
namespace (`unshare -rn`) makes one without root where the kernel allows it; files written from inside belong
to the calling user as usual. `jina-onnx embed --ray` (no address) re-runs itself that way, and
`scripts/test.sh` runs the tests that way.

Example:
    >>> argv = loopback_argv(["python", "-m", "jina_onnx", "embed", "in/", "out/", "--ray"])  # doctest: +SKIP
    >>> argv[:2]  # doctest: +SKIP
    ['/usr/bin/unshare', '-rn']
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

ENV = "JINA_ONNX_LOOPBACK_NETNS"  # set inside the namespace, so nothing tries to enter it again


def in_loopback_namespace() -> bool:
    """Whether this process's network has no interface but loopback (`lo`).

    Read from /proc/net/dev, which shows the calling process's network namespace; /sys/class/net shows the
    namespace sysfs was mounted in (the host's, inside `unshare -rn`), which made `embed --ray` try to enter a
    namespace from inside one and warn that it could not."""
    try:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return {line.split(":", 1)[0].strip() for line in lines if ":" in line} == {"lo"}


def loopback_argv(argv: list[str]) -> list[str] | None:
    """`argv` run in a new network namespace with only `lo` (brought up), or None where none can be made."""
    if not _can_unshare():
        return None
    return [
        str(shutil.which("unshare")),
        "-rn",
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        "env",
        f"{ENV}=1",
        *argv,
    ]


@lru_cache(maxsize=1)
def _can_unshare() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")) or os.name != "posix":
        return False
    try:
        probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0
