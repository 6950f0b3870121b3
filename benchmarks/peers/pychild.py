"""One artifact operation of a Python-library system, in a fresh interpreter.

    <env>/bin/python pychild.py '{"system": "objstore", "op": "log", ..., "report": PATH}'

Runs under the interpreter of the system's own environment (objstore and
our trackio façade: the project's ``.venv``; trackio 0.43: its own venv), so
it imports nothing from the benchmark package and only the standard
library besides the system itself. The script's directory is the first
entry of ``sys.path``; it holds no ``trackio`` or ``objstore``, so
``import trackio`` finds the environment's trackio.

``system``:
  * ``objstore``: the ``Repository`` API. ``log`` = snapshot + commit (with
    the previous ``main`` as parent) + ref; ``restore`` = checkout of
    ``main``; ``push`` / ``fetch`` = ``Repository.push`` / ``Repository.clone``
    + checkout, against ``url`` with ``storage_options``.
  * ``trackio``: trackio's artifact API, whichever trackio the interpreter
    has. ``trackio.init`` before and ``trackio.finish`` after the timed
    call, which is ``log_artifact(path, name, type)`` for ``log`` and
    ``use_artifact(name).download(dest)`` for ``restore``; ``push`` is
    ``trackio.sync(remote=url)`` and ``fetch`` is ``init(remote=url)`` then
    ``use_artifact(name).download(dest)`` in an empty ``TRACKIO_DIR``.

The report (JSON at ``report``) gives ``op_s`` (the call itself, the
figure the benchmark reports), ``import_s``, ``setup_s``, ``finish_s``,
``vmhwm_kb`` (this process image's peak RSS, a cross-check of the
launcher's ``wait4`` figure) and, when ``counter`` is set, the storage
requests the moto server counted during the call (``op_requests``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _vmhwm_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _requests(counter: str | None) -> int:
    if not counter:
        return 0
    import urllib.request  # only with a counter: the startup op must not pay for it

    with urllib.request.urlopen(counter, timeout=10) as r:
        return int(json.loads(r.read())["total"])


def _objstore(spec: dict[str, Any], out: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    import objstore
    from objstore import Repository
    from objstore.errors import NotARepository

    out["import_s"] = time.perf_counter() - t0
    out["objstore_file"] = objstore.__file__
    op = spec["op"]
    counter = spec.get("counter")
    opts = spec.get("storage_options")
    t1 = time.perf_counter()
    if op == "fetch":
        r0 = _requests(counter)
        t2 = time.perf_counter()
        repo = Repository.clone(spec["url"], spec["store"], storage_options=opts)
        result = repo.checkout("main", spec["dest"])
        out["op_s"] = time.perf_counter() - t2
        out["op_requests"] = _requests(counter) - r0
        out["files"] = result.files
        repo.close()
        return
    try:
        repo = Repository.open(spec["store"])
    except NotARepository:
        repo = Repository.init(spec["store"])
    out["setup_s"] = time.perf_counter() - t1
    r0 = _requests(counter)
    t2 = time.perf_counter()
    if op == "log":
        tree = repo.snapshot(spec["path"])
        parents: list[str] = [repo.refs.get("main")] if repo.refs.exists("main") else []
        commit = repo.commit(tree, parents, message=spec.get("message", ""))
        repo.refs.set("main", commit)
    elif op == "restore":
        result = repo.checkout("main", spec["dest"])
        out["files"] = result.files
    elif op == "push":
        pushed = repo.push(spec["url"], "main", create=True, storage_options=opts)
        out["storage_requests"] = pushed.requests  # objstore's own count of storage operations
    else:
        raise SystemExit(f"unknown op {op!r}")
    out["op_s"] = time.perf_counter() - t2
    out["op_requests"] = _requests(counter) - r0
    t3 = time.perf_counter()
    repo.close()
    out["finish_s"] = time.perf_counter() - t3


class _FileCounter:
    """Counts the files opened and directories listed under ``root`` while ``on`` (an audit hook).

    Audit events see every ``open()``/``os.open()`` and ``os.scandir``/``os.listdir``
    of the interpreter, whichever layer makes them (storage backend, caches,
    mmap'd files are opened first), so nothing has to be patched in objstore.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root) + os.sep
        self.on = False
        self.opened: list[str] = []
        self.listed: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.on or event not in ("open", "os.scandir", "os.listdir") or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return  # an fd
        full = os.path.realpath(path)
        if not (full + os.sep).startswith(self.root):
            return
        (self.opened if event == "open" else self.listed).append(full[len(self.root) :])


def _refs_probe(spec: dict[str, Any], out: dict[str, Any]) -> None:
    """``Repository.open`` (not counted), then ``refs.list()``: the files it opens and directories it lists."""
    import objstore
    from objstore import Repository
    from objstore import storage as storage_mod

    out["objstore_file"] = objstore.__file__

    reads = {"n": 0}
    counting = {"on": False}
    for cls in (getattr(storage_mod, "LocalStorage", None),):
        for meth in ("read", "read_range", "mmap"):
            original = getattr(cls, meth, None) if cls is not None else None
            if original is None:
                continue

            def wrapped(self: Any, *a: Any, _original: Any = original, **k: Any) -> Any:
                if counting["on"]:
                    reads["n"] += 1
                return _original(self, *a, **k)

            setattr(cls, meth, wrapped)
    counter = _FileCounter(spec["store"])
    repo = Repository.open(spec["store"])
    t0 = time.perf_counter()
    counter.on = counting["on"] = True
    refs = repo.refs.list()
    counter.on = counting["on"] = False
    out["op_s"] = time.perf_counter() - t0
    out["refs"] = len(refs)
    out["files_opened"] = len(set(counter.opened))
    out["opens"] = len(counter.opened)
    out["dirs_listed"] = len(counter.listed)
    out["storage_reads"] = reads["n"]
    out["sample_opened"] = sorted(set(counter.opened))[:5]
    repo.close()


def _store_files(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(top, f), root) for top, _d, files in os.walk(root) for f in files}


def _words(rng: Any, n: int) -> str:
    words = ("the", "model", "loss", "step", "epoch", "weights", "layer", "learning", "rate", "batch", "of", "and")
    return " ".join(rng.choice(words) for _ in range(n))


def _log_many(trackio: Any, spec: dict[str, Any], out: dict[str, Any]) -> None:
    """Versions ``start..start+count-1`` of ``artifacts`` artifacts, round-robin, from small text files."""
    import random

    src = spec["src"]
    os.makedirs(src, exist_ok=True)
    store = spec["store_dir"]
    rng = random.Random(spec["start"])
    times: list[float] = []
    added: dict[str, list[str]] = {}
    first, last = spec["start"], spec["start"] + spec["count"] - 1
    for v in range(first, last + 1):
        a = v % spec["artifacts"]
        path = os.path.join(src, f"art{a:02d}.txt")
        with open(path, "w") as f:
            f.write(f"artifact {a} version {v}: {_words(rng, 30)}\n")
        probe = v in (first, last)
        before = _store_files(store) if probe else set()
        t0 = time.perf_counter()
        trackio.log_artifact(path, name=f"art{a:02d}", type="model")
        times.append(time.perf_counter() - t0)
        if probe:
            added["first" if v == first else "last"] = sorted(_store_files(store) - before)
    out["logs_s"] = sum(times)
    out["per_log_s"] = sorted(times)[len(times) // 2]
    out["max_log_s"] = max(times)
    out["first_added"] = added.get("first", [])
    out["last_added"] = added.get("last", [])


def _trackio(spec: dict[str, Any], out: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    import trackio

    out["import_s"] = time.perf_counter() - t0
    out["trackio_file"] = trackio.__file__
    op = spec["op"]
    if op == "startup":  # `import trackio; trackio.init(project=...)`, the time a script waits before its loop
        trackio.init(project=spec.get("project", "bench"))
        out["op_s"] = time.perf_counter() - t0
        t3 = time.perf_counter()
        trackio.finish()
        out["finish_s"] = time.perf_counter() - t3
        return
    counter = spec.get("counter")
    opts = spec.get("storage_options")
    name = spec.get("name", "data")
    t1 = time.perf_counter()
    if op == "push":
        r0 = _requests(counter)
        t2 = time.perf_counter()
        trackio.sync(remote=spec["url"], storage_options=opts)
        out["op_s"] = time.perf_counter() - t2
        out["op_requests"] = _requests(counter) - r0
        return
    if op == "fetch":
        trackio.init(project=spec.get("project", "bench"), remote=spec["url"], storage_options=opts)
    else:
        trackio.init(project=spec.get("project", "bench"))
    out["setup_s"] = time.perf_counter() - t1
    r0 = _requests(counter)
    t2 = time.perf_counter()
    if op == "log":
        art = trackio.log_artifact(spec["path"], name=name, type=spec.get("type", "model"))
        out["version"] = art.version
    elif op == "log_many":
        _log_many(trackio, spec, out)
    elif op in ("restore", "fetch"):
        out["downloaded"] = trackio.use_artifact(name).download(spec["dest"])
    else:
        raise SystemExit(f"unknown op {op!r}")
    out["op_s"] = time.perf_counter() - t2
    out["op_requests"] = _requests(counter) - r0
    t3 = time.perf_counter()
    trackio.finish()
    out["finish_s"] = time.perf_counter() - t3


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    out: dict[str, Any] = {"system": spec["system"], "op": spec["op"]}
    if spec["system"] == "objstore" and spec["op"] == "refs_probe":
        _refs_probe(spec, out)
    elif spec["system"] == "objstore":
        _objstore(spec, out)
    elif spec["system"] == "trackio":
        _trackio(spec, out)
    else:
        raise SystemExit(f"unknown system {spec['system']!r}")
    out["vmhwm_kb"] = _vmhwm_kb()
    tmp = spec["report"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, spec["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
