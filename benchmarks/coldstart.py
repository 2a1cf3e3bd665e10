"""Cold start and peak memory of one runner, measured in a fresh process.

Run by the suite, not by hand: python -m benchmarks.coldstart SPEC_JSON TEXTS_JSON
Prints one JSON line: seconds to import the runtime's library, to load the model, to embed the first
sentence, and the process's peak RSS after embedding TEXTS_JSON (a list of lists of texts, one per call).
Only the standard library and numpy are loaded before the clock starts, the same for every runner.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
import warnings


def peak_rss_mb() -> float:
    """This process's peak resident memory.

    VmHWM, because it starts afresh at exec; ru_maxrss would carry over the parent's peak from the fork.
    """
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    from .runners import LIBRARY, RunnerSpec, load

    spec = RunnerSpec.from_json(argv[0])
    with open(argv[1], encoding="utf-8") as handle:
        workloads = json.load(handle)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    importlib.import_module(LIBRARY[spec.runtime])
    imported = time.perf_counter()
    encode = load(spec)
    loaded = time.perf_counter()
    encode(["how is the weather today"], 1, None)
    first = time.perf_counter()
    for texts in workloads:
        encode(texts, 32, None)
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "import_s": imported - start,
                "load_s": loaded - imported,
                "first_encode_s": first - loaded,
                "total_s": first - start,
                "peak_rss_mb": peak_mb,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
