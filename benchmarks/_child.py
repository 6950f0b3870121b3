"""One objstore operation in a fresh process, reported as JSON on stdout.

Used where the parent's own state would spoil the measurement: peak RSS
(VmHWM of this process image alone), cold-start timings (``Repository.open``
with nothing cached in memory) and single-core runs (CPU affinity set before
objstore starts its thread pool).

    python -m benchmarks._child '{"op": "snapshot", "repo": R, "path": P, "init": true, "cpus": [0]}'
    python -m benchmarks._child '{"op": "checkout", "repo": R, "tree": T, "dest": D}'
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any


def _status_kb(field: str) -> int:
    """A KiB field of /proc/self/status (VmRSS: now, VmHWM: peak), 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _peak_rss_kb() -> int:
    """Peak RSS of this process image (KiB).

    VmHWM, not ``ru_maxrss``: Linux folds the RSS high-water mark of the
    image replaced by execve into ``ru_maxrss`` (and subprocess may vfork),
    so a child's ``ru_maxrss`` can report its *parent's* peak.
    """
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    cpus = spec.get("cpus")
    if cpus is not None:
        os.sched_setaffinity(0, set(cpus))  # before any thread exists; threads inherit it

    t0 = time.perf_counter()
    from objstore import ChunkParams, Repository

    t1 = time.perf_counter()
    if spec.get("init"):
        chunking = spec.get("chunking")
        options: dict[str, Any] = {"chunking": ChunkParams(**chunking)} if chunking else {}
        repo = Repository.init(spec["repo"], **options)
    else:
        repo = Repository.open(spec["repo"])
    t2 = time.perf_counter()
    c2 = time.process_time()
    rss_before = _status_kb("VmRSS")
    peak_before = _peak_rss_kb()

    result: dict[str, object] = {}
    op = spec["op"]
    if op == "snapshot":
        result["tree"] = repo.snapshot(spec["path"])
    elif op == "checkout":
        r = repo.checkout(spec["tree"], spec["dest"])
        result["files"] = r.files
        result["bytes"] = r.bytes
    else:
        raise SystemExit(f"unknown op {op!r}")
    t3 = time.perf_counter()
    result["cpu_s"] = time.process_time() - c2
    result["rss_anon_end_kb"] = _status_kb("RssAnon")  # heap etc.
    result["rss_file_end_kb"] = _status_kb("RssFile")  # mapped files (pack mmaps), reclaimable
    repo.close()

    result.update(
        import_s=t1 - t0,
        open_s=t2 - t1,
        op_s=t3 - t2,
        rss_before_kb=rss_before,
        peak_before_kb=peak_before,
        peak_rss_kb=_peak_rss_kb(),
        ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # may include the parent's peak
        cpus=sorted(os.sched_getaffinity(0)),
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
