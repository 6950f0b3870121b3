"""Run commands one after another and report each one's wall time and rusage.

    python -I -S launch.py '{"commands": [{"argv": [...], "cwd": "..."}], "log": PATH, "report": PATH}'

This is the small launcher between the benchmark and what it measures. It
``fork``s and ``exec``s each command and collects it with ``os.wait4``,
whose rusage covers the command *and every descendant it waited for*, so
``ru_maxrss`` is the peak RSS of the largest process in the command's tree
(``git add`` runs ``git-lfs filter-process``, ``dvc`` may spawn helpers).

Why a launcher: Linux folds the RSS high-water mark of the image replaced
by ``execve`` into the new image's ``ru_maxrss``, and ``subprocess`` may
``vfork``, so a command started straight from the benchmark process (which
holds hundreds of MB) reports the benchmark's peak. Started from this
launcher (``-S``, no imports beyond the standard library's core, ~10 MB),
the floor is the launcher's own few MB.

The wall time runs from just before ``fork`` to the return of ``wait4``:
the command's whole life, without the launcher's own start-up. The report
(JSON) lists per command: ``argv``, ``rc``, ``wall_s``, ``maxrss_kb``,
``utime_s``, ``stime_s``. The commands' stdout and stderr go to ``log``.
Execution stops at the first command that fails.

Standard library only, and nothing from the benchmark package: it runs
under whichever interpreter is at hand.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _run(argv: list[str], cwd: str | None, env: dict[str, str], log_fd: int) -> dict[str, object]:
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: redirect, then become the command
        try:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            if cwd:
                os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:
            try:
                os.write(2, f"launch: cannot run {argv[0]!r}: {exc}\n".encode())
            finally:
                os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    return {
        "argv": argv,
        "rc": rc,
        "wall_s": wall,
        "maxrss_kb": ru.ru_maxrss,  # KiB on Linux
        "utime_s": ru.ru_utime,
        "stime_s": ru.ru_stime,
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    results = []
    for cmd in spec["commands"]:
        env = dict(os.environ)
        env.update(cmd.get("env") or {})
        os.write(log_fd, ("$ " + " ".join(cmd["argv"]) + "\n").encode())
        result = _run(cmd["argv"], cmd.get("cwd"), env, log_fd)
        results.append(result)
        if result["rc"] != 0:
            break
    os.close(log_fd)
    with open(spec["report"], "w") as f:
        json.dump({"commands": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
