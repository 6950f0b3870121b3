"""One adapter per system, all with the same interface.

A :class:`System` keeps everything it stores under its own run directory
(``home/`` is the private ``HOME``/cache of its processes). Every operation
is a fresh process started through ``launch.py`` (peak RSS from ``wait4``);
Python-library systems run ``pychild.py`` under their environment's
interpreter and report the call's own time, CLIs report the commands' wall
time. ``reset()`` makes a fresh, empty store (outside the clock).

The data to log lives in a *source root* (``src``): a file or a directory
named by a path relative to it. git works on the source root as its work
tree with the repository elsewhere (``GIT_DIR``/``GIT_WORK_TREE``). DVC
needs its workspace around the data and replaces workspace files on every
``dvc add`` (new inode, copied back from its cache), so it gets a workspace
of its own with a copy of the source (``prepare``, outside the clock,
whenever the source content is new; just written, so in the page cache).
Not hard links: linking and unlinking change the shared inode's ctime,
which invalidates the other systems' stat caches (objstore's, git's,
restic's) between a log and a re-log.

What each store-size figure counts (``store_paths``):

* objstore: the repository directory (packs, indexes, refs, config, the
  stat cache in ``cache/``);
* trackio (objstore): ``TRACKIO_DIR`` (the objstore repository with the
  artifact and run refs);
* trackio 0.43: ``TRACKIO_DIR`` (per-project SQLite database, lock file and
  the content-addressed blob directory ``artifacts/<project>/blobs``);
* dvc: ``.dvc/`` (cache, tmp, config), the local remote it pushes to, and
  its site cache (state and index databases), not the ``*.dvc`` pointer
  files in the workspace;
* git / git-lfs: the ``.git`` directory (for git-lfs including
  ``lfs/objects``), loose objects as ``git commit`` leaves them (automatic
  ``gc`` is off so it cannot run in the background during a measurement);
* restic: the repository and restic's local cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..common import ROOT, count_files, dir_bytes, remove, set_aside, settle
from .envs import Tool

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(HERE, "launch.py")
PYCHILD = os.path.join(HERE, "pychild.py")
RESTIC_PASSWORD = "objstore-bench"
S3_KEY = "bench"


class PeerError(RuntimeError):
    """A peer's command failed; the message carries the tail of its output."""


@dataclass
class Op:
    """One measured operation."""

    seconds: float  # reported time: the call (libraries) or the commands (CLIs)
    process_s: float  # every process of the operation, start-up included
    peak_rss: int  # bytes, largest process of the operation
    cpu_s: float  # user + system of the operation's processes
    requests: int | None = None  # HTTP requests the S3 server counted
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class S3Target:
    """A fresh bucket on the counting moto server."""

    endpoint: str
    bucket: str

    @property
    def options(self) -> dict[str, Any]:
        return {
            "key": S3_KEY,
            "secret": S3_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }


class Runner:
    """Starts operations through the launcher and collects their reports."""

    def __init__(self, scratch: str, counter_url: str | None = None) -> None:
        self.scratch = scratch
        os.makedirs(scratch, exist_ok=True)
        self.counter_url = counter_url

    def requests(self) -> int:
        if not self.counter_url:
            return 0
        import urllib.request

        with urllib.request.urlopen(self.counter_url, timeout=10) as r:
            return int(json.loads(r.read())["total"])

    def launch(self, commands: list[dict[str, Any]], env: dict[str, str], what: str) -> list[dict[str, Any]]:
        """Run ``commands`` in order through the launcher; their reports. Raises PeerError on failure."""
        tag = uuid.uuid4().hex[:8]
        log = os.path.join(self.scratch, f"{tag}.log")
        report = os.path.join(self.scratch, f"{tag}.json")
        spec = {"commands": commands, "log": log, "report": report}
        settle()
        proc = subprocess.run(
            [sys.executable, "-I", "-S", LAUNCH, json.dumps(spec)], env=env, capture_output=True, text=True, check=False
        )
        try:
            with open(report) as f:
                results: list[dict[str, Any]] = json.load(f)["commands"]
        except (OSError, ValueError):
            raise PeerError(f"{what}: launcher failed ({proc.returncode}): {proc.stderr.strip()[-400:]}") from None
        failed = [r for r in results if r["rc"] != 0]
        if failed or len(results) != len(commands):
            raise PeerError(f"{what}: `{' '.join(failed[0]['argv'][:3]) if failed else '?'}` failed: {_tail(log)}")
        remove(log)
        remove(report)
        return results

    def cli(self, commands: list[dict[str, Any]], env: dict[str, str], what: str) -> Op:
        """CLI commands: time = the commands' wall time (summed)."""
        r0 = self.requests()
        results = self.launch(commands, env, what)
        wall = sum(r["wall_s"] for r in results)
        return Op(
            seconds=wall,
            process_s=wall,
            peak_rss=max(r["maxrss_kb"] for r in results) * 1024,
            cpu_s=sum(r["utime_s"] + r["stime_s"] for r in results),
            requests=self.requests() - r0 if self.counter_url else None,
            info={
                "commands": [
                    " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(r["argv"][:3])) for r in results
                ]
            },
        )

    def py(self, python: str, spec: dict[str, Any], env: dict[str, str], what: str) -> Op:
        """A ``pychild.py`` operation: time = the call itself, measured inside the child."""
        report = os.path.join(self.scratch, f"{uuid.uuid4().hex[:8]}-child.json")
        spec = dict(spec, report=report)
        if self.counter_url:
            spec["counter"] = self.counter_url
        r0 = self.requests()
        results = self.launch([{"argv": [python, PYCHILD, json.dumps(spec)]}], env, what)
        with open(report) as f:
            child: dict[str, Any] = json.load(f)
        remove(report)
        r = results[0]
        return Op(
            seconds=child["op_s"],
            process_s=r["wall_s"],
            peak_rss=r["maxrss_kb"] * 1024,
            cpu_s=r["utime_s"] + r["stime_s"],
            requests=self.requests() - r0 if self.counter_url else None,
            info=child,
        )


def _tail(path: str, lines: int = 4) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return "(no output)"
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-400:]


def base_env(home: str) -> dict[str, str]:
    """A clean environment: private HOME and caches, nothing that reaches the network."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        HOME=home,
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        XDG_DATA_HOME=os.path.join(home, ".local", "share"),
        TMPDIR=os.path.join(home, "tmp"),
        HF_HOME=os.path.join(home, "hf"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        DO_NOT_TRACK="1",
        DVC_NO_ANALYTICS="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
        GIT_TERMINAL_PROMPT="0",
        RESTIC_PASSWORD=RESTIC_PASSWORD,
        AWS_ACCESS_KEY_ID=S3_KEY,
        AWS_SECRET_ACCESS_KEY=S3_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    os.makedirs(os.path.join(home, "tmp"), exist_ok=True)
    return env


class System:
    """The interface every system implements."""

    name = ""
    ours = False
    s3_skip: str | None = "no S3 remote"  # None: supports workload 6
    library = False  # a Python library (time = the call) rather than a CLI

    def __init__(self, tool: Tool | None, runner: Runner, base: str) -> None:
        self.tool = tool
        self.runner = runner
        self.dir = os.path.join(base, self.name.replace(" ", "_").replace("(", "").replace(")", ""))
        self.src = ""
        self.trash = ""  # set: cleanup() moves the store there instead of deleting it (common.set_aside)

    @property
    def version(self) -> str:
        return self.tool.version if self.tool else ""

    # -- lifecycle ----------------------------------------------------------

    def reset(self, src: str) -> None:
        """A fresh, empty store for data under ``src`` (outside the clock)."""
        self.cleanup()
        self.src = src
        os.makedirs(self.dir)
        self.env = base_env(os.path.join(self.dir, "home"))
        if self.ours:
            # this checkout's objstore/trackio, even when the interpreter has another one installed
            # (a worktree run with main's .venv, whose editable install points at main)
            self.env["PYTHONPATH"] = ROOT
        self.setup()

    def setup(self) -> None:
        """Create the empty store (after ``reset`` made the directories)."""

    def cleanup(self) -> None:
        set_aside(self.dir, self.trash)

    def store_paths(self) -> list[str]:
        raise NotImplementedError

    def store_size(self) -> tuple[int, int]:
        """(bytes, files) of everything the system keeps."""
        paths = [p for p in self.store_paths() if os.path.exists(p)]
        return sum(dir_bytes(p) for p in paths), sum(count_files(p) for p in paths)

    # -- operations -----------------------------------------------------------

    def prepare(self, rel: str) -> None:
        """New content at ``rel`` in the source root: bring it where the system reads it (outside the clock)."""

    def log(self, rel: str, message: str = "") -> Op:
        raise NotImplementedError

    def restore(self, rel: str, dest: str) -> tuple[Op, str]:
        """Materialize the last logged version of ``rel`` under the empty ``dest``; (op, restored path)."""
        raise NotImplementedError

    def push(self, s3: S3Target, rel: str) -> Op:
        """Send what was logged of ``rel`` to a fresh bucket."""
        raise NotImplementedError

    def fetch(self, s3: S3Target, rel: str, dest: str) -> tuple[Op, str]:
        """Get ``rel`` from the bucket onto a fresh machine, materialized under ``dest``; (op, restored path)."""
        raise NotImplementedError

    def _restored(self, rel: str, dest: str) -> str:
        """Where a library's checkout/download puts ``rel``: a directory's content at ``dest``, a file in it."""
        return dest if os.path.isdir(os.path.join(self.src, rel)) else os.path.join(dest, os.path.basename(rel))


# -- objstore and the trackio façade ---------------------------------------------


class Objstore(System):
    name = "objstore"
    ours = True
    s3_skip = None
    library = True

    def __init__(self, runner: Runner, base: str) -> None:
        super().__init__(None, runner, base)
        self.python = sys.executable

    @property
    def version(self) -> str:
        return "objstore (this checkout)"

    @property
    def store(self) -> str:
        return os.path.join(self.dir, "store")

    def store_paths(self) -> list[str]:
        return [self.store]

    def log(self, rel: str, message: str = "") -> Op:
        spec = {
            "system": "objstore",
            "op": "log",
            "store": self.store,
            "path": os.path.join(self.src, rel),
            "message": message,
        }
        return self._checked(self.runner.py(self.python, spec, self.env, f"{self.name} log"))

    @staticmethod
    def _checked(op: Op) -> Op:
        where = op.info.get("objstore_file", "")
        if not where.startswith(os.path.join(ROOT, "objstore") + os.sep):
            raise PeerError(f"objstore: imported another checkout's objstore ({where})")
        return op

    def restore(self, rel: str, dest: str) -> tuple[Op, str]:
        spec = {"system": "objstore", "op": "restore", "store": self.store, "dest": dest}
        return self.runner.py(self.python, spec, self.env, f"{self.name} restore"), self._restored(rel, dest)

    def refs_probe(self, store: str | None = None) -> Op:
        """``refs.list()`` on ``store`` (default: this system's) in a fresh process: files opened, dirs listed."""
        spec = {"system": "objstore", "op": "refs_probe", "store": store or self.store}
        return self._checked(self.runner.py(self.python, spec, self.env, f"{self.name} refs.list()"))

    def push(self, s3: S3Target, rel: str) -> Op:
        spec = {
            "system": "objstore",
            "op": "push",
            "store": self.store,
            "url": f"s3://{s3.bucket}/store",
            "storage_options": s3.options,
        }
        return self.runner.py(self.python, spec, self.env, f"{self.name} push")

    def fetch(self, s3: S3Target, rel: str, dest: str) -> tuple[Op, str]:
        clone = os.path.join(self.dir, "clone")
        remove(clone)
        spec = {
            "system": "objstore",
            "op": "fetch",
            "store": clone,
            "dest": dest,
            "url": f"s3://{s3.bucket}/store",
            "storage_options": s3.options,
        }
        return self.runner.py(self.python, spec, self.env, f"{self.name} fetch"), self._restored(rel, dest)


class Trackio(System):
    """trackio's artifact API: ours (façade over objstore) or the reference trackio 0.43."""

    library = True

    def __init__(self, name: str, ours: bool, python: str, tool: Tool | None, runner: Runner, base: str) -> None:
        self.name = name
        self.ours = ours
        self.s3_skip = (
            None
            if ours
            else ("trackio 0.43 syncs artifacts only to a Hugging Face Space/bucket or a trackio server, not to S3")
        )
        super().__init__(tool, runner, base)
        self.python = python

    @property
    def version(self) -> str:
        return "trackio façade (this checkout)" if self.ours else super().version

    def setup(self) -> None:
        self.env["TRACKIO_DIR"] = os.path.join(self.dir, "trackio")

    def store_paths(self) -> list[str]:
        return [self.trackio_dir]

    @staticmethod
    def _artifact(rel: str) -> str:
        return "data-" + "".join(c if c.isalnum() else "-" for c in rel)

    def log(self, rel: str, message: str = "") -> Op:
        spec = {
            "system": "trackio",
            "op": "log",
            "path": os.path.join(self.src, rel),
            "name": self._artifact(rel),
            "type": "model",
        }
        op = self.runner.py(self.python, spec, self.env, f"{self.name} log")
        self._check_import(op)
        return op

    def _check_import(self, op: Op) -> None:
        where = op.info.get("trackio_file", "")
        mine = where.startswith(os.path.join(ROOT, "trackio") + os.sep)
        if mine != self.ours:
            raise PeerError(f"{self.name}: imported the wrong trackio ({where})")

    def restore(self, rel: str, dest: str) -> tuple[Op, str]:
        spec = {"system": "trackio", "op": "restore", "name": self._artifact(rel), "dest": dest}
        op = self.runner.py(self.python, spec, self.env, f"{self.name} restore")
        return op, self._restored(rel, dest)

    @property
    def trackio_dir(self) -> str:
        return os.path.join(self.dir, "trackio")

    def log_many(self, src: str, start: int, count: int, artifacts: int) -> Op:
        """Versions ``start..start+count-1`` of ``artifacts`` artifacts (round-robin) in one process (one run).

        Each version is a small text file written into ``src``; the report has
        ``logs_s`` (the calls), ``per_log_s`` (median call) and the files the
        first and the last call added to the store (``first_added`` / ``last_added``).
        """
        spec = {
            "system": "trackio",
            "op": "log_many",
            "src": src,
            "store_dir": self.trackio_dir,
            "start": start,
            "count": count,
            "artifacts": artifacts,
        }
        op = self.runner.py(self.python, spec, self.env, f"{self.name} log_artifact x{count}")
        self._check_import(op)
        return op

    def startup(self, write_bytecode: bool = False) -> Op:
        """``import trackio; trackio.init(project=...)`` in a fresh process; ``op_s`` is both together.

        ``write_bytecode`` lets the interpreter write ``.pyc`` files (a warm-up run;
        the measured runs, like every operation, run with ``PYTHONDONTWRITEBYTECODE``).
        """
        env = dict(self.env)
        if write_bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        op = self.runner.py(self.python, {"system": "trackio", "op": "startup"}, env, f"{self.name} startup")
        self._check_import(op)
        return op

    def push(self, s3: S3Target, rel: str) -> Op:
        spec = {"system": "trackio", "op": "push", "url": f"s3://{s3.bucket}/trackio", "storage_options": s3.options}
        return self.runner.py(self.python, spec, self.env, f"{self.name} push")

    def fetch(self, s3: S3Target, rel: str, dest: str) -> tuple[Op, str]:
        env = dict(self.env, TRACKIO_DIR=os.path.join(self.dir, "fetched"))  # a fresh machine
        remove(env["TRACKIO_DIR"])
        spec = {
            "system": "trackio",
            "op": "fetch",
            "name": self._artifact(rel),
            "dest": dest,
            "url": f"s3://{s3.bucket}/trackio",
            "storage_options": s3.options,
        }
        return self.runner.py(self.python, spec, env, f"{self.name} fetch"), self._restored(rel, dest)


# -- DVC -------------------------------------------------------------------------------


class Dvc(System):
    """``dvc add`` + ``dvc push`` to a local remote; restore = ``dvc checkout`` in a fresh workspace."""

    name = "dvc"
    s3_skip = None

    def __init__(self, tool: Tool, runner: Runner, base: str) -> None:
        super().__init__(tool, runner, base)
        assert tool.exe is not None
        self.exe = tool.exe

    def _init(self, workspace: str, *, site: str, cache: str | None = None, s3: S3Target | None = None) -> None:
        """``dvc init`` in ``workspace``, then its config."""
        os.makedirs(workspace, exist_ok=True)
        self.runner.launch([{"argv": [self.exe, "init", "--no-scm", "-q"], "cwd": workspace}], self.env, "dvc init")
        self._config(workspace, site=site, cache=cache, s3=s3)

    def _config(self, workspace: str, *, site: str, cache: str | None = None, s3: S3Target | None = None) -> None:
        """No update checks or analytics, our site cache dir and remotes."""
        lines = [
            "[core]",
            "    no_scm = True",
            f"    remote = {'s3' if s3 else 'local'}",
            "    check_update = false",
            "    analytics = false",
            f"    site_cache_dir = {site}",
            "['remote \"local\"']",
            f"    url = {os.path.join(self.dir, 'remote')}",
        ]
        if cache:
            lines += ["[cache]", f"    dir = {cache}"]
        if s3:
            lines += ["['remote \"s3\"']", f"    url = s3://{s3.bucket}/dvc", f"    endpointurl = {s3.endpoint}"]
        with open(os.path.join(workspace, ".dvc", "config"), "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def ws(self) -> str:
        """The project's workspace, with a copy of the source data (``dvc add`` replaces workspace files)."""
        return os.path.join(self.dir, "ws")

    def setup(self) -> None:
        self._init(self.ws, site=os.path.join(self.dir, "site"))

    def prepare(self, rel: str) -> None:
        src, dst = os.path.join(self.src, rel), os.path.join(self.ws, rel)
        remove(dst)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)

    def store_paths(self) -> list[str]:
        return [os.path.join(self.ws, ".dvc"), os.path.join(self.dir, "remote"), os.path.join(self.dir, "site")]

    def log(self, rel: str, message: str = "") -> Op:
        cmds = [
            {"argv": [self.exe, "add", "-q", rel], "cwd": self.ws},
            {"argv": [self.exe, "push", "-q"], "cwd": self.ws},
        ]
        return self.runner.cli(cmds, self.env, "dvc add + push")

    def _workspace(self, name: str, rel: str, cache: str | None, s3: S3Target | None = None) -> str:
        """A fresh clone of the project: its config and the pointer file of ``rel``."""
        ws = os.path.join(self.dir, name)
        remove(ws)
        self._init(ws, site=os.path.join(self.dir, f"site-{name}"), cache=cache, s3=s3)
        shutil.copy(os.path.join(self.ws, rel + ".dvc"), os.path.join(ws, os.path.basename(rel) + ".dvc"))
        return ws

    def restore(self, rel: str, dest: str) -> tuple[Op, str]:
        # A fresh workspace sharing the project's cache, then `dvc checkout` (copies out of the cache).
        ws = self._workspace("checkout", rel, os.path.join(self.ws, ".dvc", "cache"))
        op = self.runner.cli([{"argv": [self.exe, "checkout", "-q"], "cwd": ws}], self.env, "dvc checkout")
        os.rmdir(dest)
        os.rename(ws, dest)
        return op, os.path.join(dest, os.path.basename(rel))

    def push(self, s3: S3Target, rel: str) -> Op:
        self._config(self.ws, site=os.path.join(self.dir, "site"), s3=s3)  # adds the S3 remote (outside the clock)
        return self.runner.cli(
            [{"argv": [self.exe, "push", "-q", "-r", "s3"], "cwd": self.ws}], self.env, "dvc push -r s3"
        )

    def fetch(self, s3: S3Target, rel: str, dest: str) -> tuple[Op, str]:
        # A fresh clone of the project with an empty cache, then `dvc pull` from S3 (into the cache, then the workspace).
        ws = self._workspace("pull", rel, None, s3)
        op = self.runner.cli([{"argv": [self.exe, "pull", "-q", "-r", "s3"], "cwd": ws}], self.env, "dvc pull -r s3")
        os.rmdir(dest)
        os.rename(ws, dest)
        return op, os.path.join(dest, os.path.basename(rel))


# -- git and git-lfs -------------------------------------------------------------------


class Git(System):
    """``git add`` + ``git commit`` of the source root as work tree; restore = ``git checkout`` into a new one."""

    name = "git"
    lfs = False

    def __init__(self, tool: Tool, runner: Runner, base: str) -> None:
        super().__init__(tool, runner, base)
        assert tool.exe is not None
        self.exe = tool.exe

    @property
    def git_dir(self) -> str:
        return os.path.join(self.dir, "repo", ".git")

    def setup(self) -> None:
        repo = os.path.join(self.dir, "repo")
        cmds = [{"argv": [self.exe, "init", "-q", repo]}, {"argv": [self.exe, "-C", repo, "config", "gc.auto", "0"]}]
        if self.lfs:
            cmds.append({"argv": [self.exe, "-C", repo, "lfs", "install", "--local"]})
        self.runner.launch(cmds, self.env, "git init")
        if self.lfs:  # every file through LFS, without writing .gitattributes into the source
            with open(os.path.join(self.git_dir, "info", "attributes"), "w") as f:
                f.write("* filter=lfs diff=lfs merge=lfs -text\n")
        self.env.update(GIT_DIR=self.git_dir, GIT_WORK_TREE=self.src)

    def store_paths(self) -> list[str]:
        return [self.git_dir]

    def log(self, rel: str, message: str = "") -> Op:
        cmds = [
            {"argv": [self.exe, "add", "-A", "--", rel], "cwd": self.src},
            {"argv": [self.exe, "commit", "-q", "--allow-empty", "-m", message or "log"], "cwd": self.src},
        ]
        return self.runner.cli(cmds, self.env, f"{self.name} add + commit")

    def restore(self, rel: str, dest: str) -> tuple[Op, str]:
        env = dict(self.env, GIT_WORK_TREE=dest, GIT_INDEX_FILE=os.path.join(self.dir, "restore.index"))
        remove(env["GIT_INDEX_FILE"])
        op = self.runner.cli(
            [{"argv": [self.exe, "checkout", "HEAD", "--", rel], "cwd": dest}], env, f"{self.name} checkout"
        )
        return op, os.path.join(dest, rel)


class GitLfs(Git):
    name = "git-lfs"
    lfs = True
    s3_skip = "git-lfs needs an LFS server (no S3 remote)"


class PlainGit(Git):
    s3_skip = "git has no S3 remote"


# -- restic -------------------------------------------------------------------------------


class Restic(System):
    """``restic backup`` / ``restic restore`` with a local repository (``restic init`` outside the clock)."""

    name = "restic"
    s3_skip = None

    def __init__(self, tool: Tool, runner: Runner, base: str) -> None:
        super().__init__(tool, runner, base)
        assert tool.exe is not None
        self.exe = tool.exe

    def setup(self) -> None:
        self.env.update(
            RESTIC_REPOSITORY=os.path.join(self.dir, "repo"), RESTIC_CACHE_DIR=os.path.join(self.dir, "cache")
        )
        self.runner.launch([{"argv": [self.exe, "init", "-q"]}], self.env, "restic init")

    def store_paths(self) -> list[str]:
        return [os.path.join(self.dir, "repo"), os.path.join(self.dir, "cache")]

    def _backup(self, rel: str, env: dict[str, str], what: str) -> Op:
        return self.runner.cli(
            [{"argv": [self.exe, "backup", "-q", "--host", "bench", os.path.join(self.src, rel)]}], env, what
        )

    def log(self, rel: str, message: str = "") -> Op:
        return self._backup(rel, self.env, "restic backup")

    def restore(self, rel: str, dest: str) -> tuple[Op, str]:
        op = self.runner.cli(
            [{"argv": [self.exe, "restore", "-q", "latest", "--target", dest]}], self.env, "restic restore"
        )
        return op, dest + os.path.join(self.src, rel)

    def _s3_env(self, s3: S3Target, cache: str) -> dict[str, str]:
        return dict(self.env, RESTIC_REPOSITORY=f"s3:{s3.endpoint}/{s3.bucket}/restic", RESTIC_CACHE_DIR=cache)

    def push(self, s3: S3Target, rel: str) -> Op:
        # restic has no push: backing up straight into an S3 repository is how data gets there.
        env = self._s3_env(s3, os.path.join(self.dir, "cache-s3"))
        self.runner.launch([{"argv": [self.exe, "init", "-q"]}], env, "restic init (S3)")
        return self._backup(rel, env, "restic backup to S3")

    def fetch(self, s3: S3Target, rel: str, dest: str) -> tuple[Op, str]:
        cache = os.path.join(self.dir, "cache-fetch")  # a fresh machine: empty cache
        remove(cache)
        env = self._s3_env(s3, cache)
        op = self.runner.cli(
            [{"argv": [self.exe, "restore", "-q", "latest", "--target", dest]}], env, "restic restore from S3"
        )
        return op, dest + os.path.join(self.src, rel)


def make_systems(
    tools: dict[str, Tool],
    runner: Runner,
    base: str,
    python: str | None = None,
    peers: tuple[str, ...] = ("trackio 0.43", "dvc", "git", "git-lfs", "restic"),
) -> tuple[list[System], dict[str, str]]:
    """(the available systems, ours first; {peer: why skipped}); ``peers`` picks which peers take part."""
    python = python or sys.executable
    systems: list[System] = [Objstore(runner, base), Trackio("trackio (objstore)", True, python, None, runner, base)]
    skipped: dict[str, str] = {}
    t = tools.get("trackio 0.43")
    if "trackio 0.43" not in peers:
        pass
    elif t and t.ok and t.python:
        systems.append(Trackio("trackio 0.43", False, t.python, t, runner, base))
    else:
        skipped["trackio 0.43"] = t.reason if t else "not set up"
    for name, cls in (("dvc", Dvc), ("git", PlainGit), ("git-lfs", GitLfs), ("restic", Restic)):
        if name not in peers:
            continue
        t = tools.get(name)
        if t and t.ok:
            systems.append(cls(t, runner, base))
        else:
            skipped[name] = t.reason if t else "not set up"
    return systems, skipped
