"""What a person at a shell sees: errors as one line, flags anywhere, readable output, bars.

Every test runs the real console scripts in a subprocess and checks the
exit code, stdout and stderr (docs/cli.md promises each of these).
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
REFUSED = "http://127.0.0.1:9/x"  # the discard port: nothing listens there


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def run_on_tty(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (as in a shell); return (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=subprocess.PIPE, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    seen = b""
    while True:
        try:
            block = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not block:
            break
        seen += block
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    return proc.wait(timeout=120), out, seen.decode(errors="replace")


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Warning:" not in stderr and ".py" not in stderr, stderr
    return lines[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"alpha\n")
    (d / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    return d


@pytest.fixture
def store(tmp_path: Path, data: Path) -> list[str]:
    """``objstore -r <store>`` with two commits on ``main`` (the second adds c.txt and grows a.txt)."""
    r = ["objstore", "-r", str(tmp_path / "store")]
    run(*r, "init")
    run(*r, "snapshot", str(data), "-m", "one", "--ref", "main")
    (data / "a.txt").write_bytes(b"alpha, longer\n")
    (data / "c.txt").write_bytes(b"c" * 2000)
    run(*r, "snapshot", str(data), "-m", "two", "--ref", "main")
    return r


@pytest.fixture
def tenv(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TRACKIO_DIR": str(tmp_path / "td"), "TRACKIO_PROJECT": "proj"}


# -- 5. one line per error ------------------------------------------------------------


def test_connection_refused_is_one_line_naming_the_url(store: list[str], data: Path, tenv: dict[str, str]) -> None:
    line = one_line(run(*store, "push", REFUSED, code=1).stderr)
    assert line.startswith(f"objstore: {REFUSED}: cannot connect to 127.0.0.1:9 (connection refused)"), line
    assert "check the URL" in line
    line = one_line(run(*store, "fetch", REFUSED, code=1).stderr)
    assert REFUSED in line and "connection refused" in line
    run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv)  # something to push
    line = one_line(run("trackio", "artifacts", "--remote", REFUSED, "push", env=tenv, code=1).stderr)
    assert line.startswith(f"trackio: {REFUSED}: cannot connect to 127.0.0.1:9 (connection refused)"), line


def test_debug_flag_and_environment_show_the_traceback(store: list[str], data: Path, tenv: dict[str, str]) -> None:
    for args, env in [([*store, "push", REFUSED, "--debug"], None), ([*store, "--debug", "push", REFUSED], None),
                      ([*store, "push", REFUSED], {**os.environ, "OBJSTORE_DEBUG": "1"})]:
        proc = run(*args, env=env, code=1)
        assert "Traceback (most recent call last)" in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith(f"objstore: {REFUSED}: cannot connect"), proc.stderr
    run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv)
    proc = run("trackio", "artifacts", "--remote", REFUSED, "push", "--debug", env=tenv, code=1)
    assert "Traceback (most recent call last)" in proc.stderr


def test_missing_optional_package_names_the_pip_extra(store: list[str], tmp_path: Path, data: Path, tenv: dict[str, str]) -> None:
    blocker = tmp_path / "no-paramiko"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'paramiko':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", str(ROOT))])}
    url = "sftp://127.0.0.1/srv/store"
    line = one_line(run(*store, "push", url, env=env, code=1).stderr)
    assert line == f"objstore: {url}: sftp:// support needs paramiko, which is not installed; run: pip install 'objstore[sftp]'"
    run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv)
    line = one_line(run("trackio", "artifacts", "--remote", url, "push", env={**tenv, "PYTHONPATH": env["PYTHONPATH"]}, code=1).stderr)
    assert line.startswith(f"trackio: {url}: ") and "pip install 'objstore[sftp]'" in line


def test_permission_denied_is_explained() -> None:
    from objstore.cliutil import error_line

    exc = PermissionError(13, "Permission denied", "/srv/store/config")
    assert error_line(exc, "/srv/store") == (
        "/srv/store: permission denied ([Errno 13] Permission denied: '/srv/store/config'); check your credentials and access rights"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_push_target_is_one_line(store: list[str], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    line = one_line(run(*store, "push", "--create", f"file://{locked}/remote", code=1).stderr)
    assert "permission denied" in line


# -- 6. an unreachable remote does not fail a log -----------------------------------------


def test_log_with_unreachable_remote_succeeds_and_says_it_is_queued(data: Path, tenv: dict[str, str]) -> None:
    proc = run("trackio", "artifacts", "--remote", REFUSED, "log", str(data), "-n", "model", env=tenv)
    assert proc.stdout.startswith("logged proj/model:v0: 2 files, 293 KiB"), proc.stdout
    line = one_line(proc.stderr)
    assert line.startswith(f"trackio: warning: not pushed: {REFUSED}: cannot connect"), line
    assert "queued" in line and f"'trackio artifacts --remote {REFUSED} push' sends it" in line
    listed = json.loads(run("trackio", "artifacts", "list", "--json", env=tenv).stdout)
    assert [a["qualified_name"] for a in listed] == ["proj/model:v0"]


def test_reads_with_unreachable_remote_fall_back_with_one_warning_line(data: Path, tenv: dict[str, str], tmp_path: Path) -> None:
    run("trackio", "artifacts", "log", str(data), "-n", "model", env=tenv)
    proc = run("trackio", "artifacts", "--remote", REFUSED, "download", "model", "--root", str(tmp_path / "dl"), env=tenv)
    assert proc.stdout.strip() == str(tmp_path / "dl")
    line = one_line(proc.stderr)
    assert line == (f"trackio: warning: remote {REFUSED} unreachable while resolving proj/model:latest (cannot connect to "
                    "127.0.0.1:9 (connection refused); check the URL and that the server is running); working locally")


# -- 7. flags before or after the subcommand ----------------------------------------------


def test_global_flags_work_after_the_subcommand(store: list[str], tmp_path: Path, data: Path, tenv: dict[str, str]) -> None:
    before = json.loads(run(*store, "--json", "stats").stdout)
    after = json.loads(run(*store, "stats", "--json").stdout)
    assert before["commits"] == after["commits"] == 2
    proc = run(*store, "push", f"file://{tmp_path}/remote", "-q", "--json", "-o", "auto_mkdir=true", "--create")
    assert json.loads(proc.stdout)["refs_updated"]["main"][1] == json.loads(run(*store, "--json", "refs", "list").stdout)["main"]
    assert json.loads(run(*store, "refs", "list", "--json").stdout).keys() == {"main"}
    assert run("trackio", "artifacts", "log", str(data), "-n", "m", "--json", "-q", env=tenv).stdout.lstrip().startswith("{")
    assert json.loads(run("trackio", "artifacts", "versions", "m", "--json", env=tenv).stdout)[0]["version"] == "v0"
    run("trackio", "artifacts", "alias", "set", "m:v0", "prod", "--json", env=tenv)
    bad = run(*store, "stats", "-o", "novalue", code=2)
    assert "expected KEY=VALUE" in bad.stderr


# -- 8. REF~N and REF^ ------------------------------------------------------------------------


def test_parent_steps_name_commits_everywhere(store: list[str]) -> None:
    log = json.loads(run(*store, "--json", "log", "main").stdout)
    two, one = log[0]["id"], log[1]["id"]
    for spec in ("main~1", "main^", "main^1", "main~", f"{two[:10]}^", "main^^0"):
        assert json.loads(run(*store, "--json", "show", spec).stdout)["id"] == one, spec
    assert json.loads(run(*store, "--json", "show", "main~0").stdout)["id"] == two
    assert [c["id"] for c in json.loads(run(*store, "--json", "log", "main^").stdout)] == [one]
    assert run(*store, "diff", "main~1", "main").stdout.splitlines()[0].split()[-1] == "a.txt"
    assert run(*store, "cat", "main~1", "a.txt").stdout == "alpha\n"
    run(*store, "refs", "set", "prod", "main")
    run(*store, "refs", "set", "prod", "main~1", "--expect", "main")
    assert json.loads(run(*store, "--json", "refs", "list").stdout)["prod"] == one
    line = one_line(run(*store, "show", "main~2", code=1).stderr)
    assert line == f"objstore: no such ancestor (commit {one[:12]} has no parent): main~2"
    assert "has only 1 parent" in one_line(run(*store, "show", "main^2", code=1).stderr)
    assert "no such ref: 'nope'" in one_line(run(*store, "show", "nope~1", code=1).stderr)


# -- 9. outside a store ----------------------------------------------------------------------------


def test_repository_is_found_in_a_parent_folder(tmp_path: Path, data: Path) -> None:
    project = tmp_path / "project"
    deep = project / "src" / "deep"
    deep.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "OBJSTORE_REPO"}
    assert run("objstore", "init", env=env, cwd=project).stdout.startswith(f"initialized {project / '.objstore'}")
    run("objstore", "-q", "snapshot", str(data), "--ref", "main", env=env, cwd=deep)
    assert json.loads(run("objstore", "--json", "refs", "list", env=env, cwd=deep).stdout).keys() == {"main"}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    line = one_line(run("objstore", "log", "main", env=env, cwd=outside, code=1).stderr)
    assert f"no objstore repository at '{outside / '.objstore'}'" in line
    for hint in ("objstore init", "-r PATH", "OBJSTORE_REPO"):
        assert hint in line, line
    line = one_line(run("objstore", "-r", str(outside / "nope"), "log", "main", env=env, code=1).stderr)
    assert f"create one with 'objstore -r {outside / 'nope'} init'" in line


# -- 10. readable output ---------------------------------------------------------------------------

SIZE = r"\d+(\.\d+)? (B|KiB|MiB|GiB)"
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_objstore_text_output_uses_units_words_and_local_times(store: list[str], tmp_path: Path) -> None:
    ls = run(*store, "ls", "main").stdout
    assert re.search(r"^file\s+14 B\s+a\.txt$", ls, re.M) and re.search(r"^file\s+1\.95 KiB\s+c\.txt$", ls, re.M), ls
    assert re.search(r"^dir\s+sub/$", ls, re.M), ls
    assert re.search(r"^file\s+293 KiB\s+sub/b\.bin$", run(*store, "ls", "main", "-R").stdout, re.M)
    stats = run(*store, "stats").stdout
    assert re.search(rf"^logical_bytes\s+{SIZE}$", stats, re.M) and re.search(rf"^stored_bytes\s+{SIZE}$", stats, re.M), stats
    assert isinstance(json.loads(run(*store, "stats", "--json").stdout)["logical_bytes"], int)
    out = run(*store, "checkout", "main", str(tmp_path / "out")).stdout
    assert out.strip() == "3 files written (295 KiB), 0 already in place"
    one = run(*store, "checkout", "main", str(tmp_path / "one"), "--path", "a.txt").stdout
    assert one.strip() == "1 file written (14 B), 0 already in place"
    assert json.loads(run(*store, "checkout", "main", str(tmp_path / "j"), "--json").stdout)["bytes"] == 302014
    show = run(*store, "show", "main").stdout
    assert not show.lstrip().startswith("{"), show
    assert re.search(rf"^date\s+{WHEN}$", show, re.M) and re.search(r"^parent\s+[0-9a-f]{32}$", show, re.M), show
    assert "    two" in show.splitlines()
    assert isinstance(json.loads(run(*store, "show", "main", "--json").stdout)["time"], float)
    tree = show.splitlines()[1].split()[1]
    assert re.match(rf"tree {tree}: 3 entries, {SIZE}$", run(*store, "show", tree).stdout.splitlines()[0])
    fsck = run(*store, "fsck").stdout.splitlines()
    assert re.fullmatch(r"\d+ packs, \d+ objects, 1 ref checked", fsck[0]) and fsck[1:] == ["ok"], fsck
    push = run(*store, "push", "--create", f"file://{tmp_path}/remote").stdout.strip()
    assert re.fullmatch(rf"sent \d+ objects \({SIZE}\) in 1 pack; 1 ref updated \(main\); \d+ requests", push), push


def test_trackio_text_output_uses_units_and_local_times(data: Path, tenv: dict[str, str]) -> None:
    t = ["trackio", "artifacts"]
    run(*t, "log", str(data), "-n", "model", env=tenv)
    show = run(*t, "show", "model", env=tenv).stdout
    assert show.startswith("proj/model:v0  type=unspecified  size=293 KiB in 2 files  aliases=latest"), show
    assert re.search(rf"^created {WHEN}  digest [0-9a-f]+$", show, re.M), show
    assert re.search(r"^\s+293 KiB  sub/b\.bin$", show, re.M), show
    versions = run(*t, "versions", "model", env=tenv).stdout.splitlines()
    assert versions[0].split() == ["VERSION", "CREATED", "SIZE", "ALIASES"]
    assert re.fullmatch(rf"v0\s+{WHEN}\s+293 KiB\s+latest", versions[1]), versions
    assert json.loads(run(*t, "--json", "versions", "model", env=tenv).stdout)[0]["size"] == 300_006


# -- 11. progress bars ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bars_show_total_percent_and_eta_and_stay_on_a_terminal(store: list[str], tmp_path: Path, data: Path, tenv: dict[str, str]) -> None:
    (data / "big.bin").write_bytes(os.urandom(3_000_000))
    code, out, tty = run_on_tty(*store, "snapshot", str(data), "--ref", "main")
    assert code == 0 and out.startswith("commit "), out
    final = tty.strip().split("\r")[-1]
    assert re.search(r"snapshot: 100%\|.*\| 3\.1\dM/3\.1\dM \[\d\d:\d\d<\d\d:\d\d", final), tty
    code, _, tty = run_on_tty(*store, "checkout", "main", str(tmp_path / "out"))
    assert code == 0 and re.search(r"checkout:\s+0%\|.*\| 0\.00/3\.1\dM \[00:00<\?", tty), tty
    assert re.search(r"checkout: 100%\|.*\| 3\.1\dM/3\.1\dM", tty.strip().split("\r")[-1]), tty
    code, _, tty = run_on_tty(*store, "fsck")
    assert code == 0 and re.search(r"fsck: 100%\|", tty.strip().split("\r")[-1]), tty
    for args in (["push", "--create", f"file://{tmp_path}/remote"], ["fetch", f"file://{tmp_path}/remote"]):
        code, _, tty = run_on_tty(*store, *args)
        assert code == 0 and re.search(rf"{args[0]}: \d", tty), tty
    code, _, tty = run_on_tty("objstore", "clone", f"file://{tmp_path}/remote", str(tmp_path / "clone"), cwd=tmp_path)
    assert code == 0 and re.search(r"clone: 3\.\d\dMB \[", tty), tty
    code, out, tty = run_on_tty("trackio", "artifacts", "log", str(data), "-n", "big", env=tenv)
    assert code == 0 and re.search(r"log: 100%\|.*\| 3\.\d\dM/3\.\d\dM", tty.strip().split("\r")[-1]), tty
    code, _, tty = run_on_tty("trackio", "artifacts", "--remote", f"file://{tmp_path}/tremote", "push", env=tenv)
    assert code == 0 and re.search(r"push: \d", tty), tty
    code, _, tty = run_on_tty("trackio", "artifacts", "fsck", env=tenv)
    assert code == 0 and "fsck: 100%|" in tty.strip().split("\r")[-1], tty
    code, _, tty = run_on_tty("trackio", "artifacts", "download", "big", "--root", str(tmp_path / "dl"), env=tenv)
    assert code == 0 and re.search(r"download: 100%\|.*\| 3\.\d\dM/3\.\d\dM", tty.strip().split("\r")[-1]), tty
    code, _, tty = run_on_tty("trackio", "artifacts", "--remote", f"file://{tmp_path}/tremote", "pull", env={**tenv, "TRACKIO_DIR": str(tmp_path / "td2")})
    assert code == 0 and re.search(r"pull: 3\.\d\dMB \[", tty), tty
    for args in (["objstore", *store[1:], "gc", "--grace", "0"], ["trackio", "artifacts", "gc", "--grace", "0"]):
        code, _, tty = run_on_tty(*args, env=tenv)
        assert code == 0 and re.search(r"gc: \d", tty), tty
    code, _, tty = run_on_tty(*store, "-q", "checkout", "main", str(tmp_path / "quiet"))
    assert code == 0 and tty.strip() == "", tty
    code, _, tty = run_on_tty(*store, "checkout", "main", str(tmp_path / "quiet2"), "-q")
    assert code == 0 and tty.strip() == "", tty


def test_no_bars_when_stderr_is_not_a_terminal(store: list[str], tmp_path: Path) -> None:
    proc = run(*store, "checkout", "main", str(tmp_path / "out"))
    assert proc.stderr == ""


# -- 12. artifacts: tables, diff, snapshot report, unchanged, suggestions ---------------------------------------


def test_artifact_list_is_an_aligned_table(data: Path, tenv: dict[str, str]) -> None:
    long = "a-rather-long-artifact-name-that-is-wider-than-forty-characters"
    run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv)
    run("trackio", "artifacts", "log", str(data / "a.txt"), "-n", long, "--type", "dataset", "-a", "prod", env=tenv)
    lines = run("trackio", "artifacts", "list", env=tenv).stdout.splitlines()
    assert lines[0].split() == ["ARTIFACT", "TYPE", "SIZE", "CREATED", "ALIASES"]
    assert [line.split()[0] for line in lines[1:]] == [f"proj/{long}:v0", "proj/m:v0"]
    starts = {h: lines[0].index(h) for h in ("TYPE", "CREATED", "ALIASES")}
    assert lines[1][starts["TYPE"]:].startswith("dataset") and lines[2][starts["TYPE"]:].startswith("unspecified")
    assert lines[1][starts["ALIASES"]:] == "latest, prod" and lines[2][starts["ALIASES"]:] == "latest"
    size_end = lines[0].index("SIZE") + len("SIZE")
    assert lines[1][:size_end].endswith("6 B") and lines[2][:size_end].endswith("293 KiB")
    assert run("trackio", "artifacts", "list", "--type", "nothing", env={**tenv}).stdout.strip() == "no artifacts"


def test_diffs_say_D_for_deleted_and_show_size_changes(data: Path, tenv: dict[str, str], store: list[str]) -> None:
    t = ["trackio", "artifacts"]
    run(*t, "log", str(data), "-n", "m", env=tenv)
    (data / "sub" / "b.bin").unlink()
    (data / "a.txt").write_bytes(b"a" * 3000)
    (data / "new.txt").write_bytes(b"n" * 10)
    run(*t, "log", str(data), "-n", "m", env=tenv)
    lines = run(*t, "diff", "m:v0", "m:v1", env=tenv).stdout.splitlines()
    assert [line.split() for line in lines] == [["M", "+2.92", "KiB", "a.txt"], ["A", "+10", "B", "new.txt"], ["D", "-293", "KiB", "sub/b.bin"]]
    assert run(*t, "diff", "m:v1", "m:v1", env=tenv).stdout.strip() == "no differences"
    lines = run(*store, "diff", "main", "main~1").stdout.splitlines()
    assert [line.split() for line in lines] == [["M", "-8", "B", "a.txt"], ["D", "-1.95", "KiB", "c.txt"]]
    assert json.loads(run(*store, "--json", "diff", "main", "main~1").stdout)[1] == {"status": "removed", "path": "c.txt", "size_delta": -2000}


def test_snapshot_says_what_it_stored_and_warns_about_an_unnamed_commit(tmp_path: Path, data: Path) -> None:
    r = ["objstore", "-r", str(tmp_path / "s")]
    run(*r, "init")
    proc = run(*r, "snapshot", str(data), "--ref", "main")
    m = re.fullmatch(rf"commit ([0-9a-f]{{32}}) on main: 2 files, 293 KiB \(({SIZE}) new\)", proc.stdout.strip())
    assert m and proc.stderr == "", proc.stdout + proc.stderr
    proc = run(*r, "snapshot", str(data))
    m = re.fullmatch(r"commit ([0-9a-f]{32}): 2 files, 293 KiB \((\d+) B new\)", proc.stdout.strip())
    assert m and int(m.group(2)) < 1000, proc.stdout  # only the new commit object: the files are stored already
    line = one_line(proc.stderr)
    assert line == (f"objstore: warning: no ref points at commit {m.group(1)[:12]}; name it with "
                    f"'objstore refs set NAME {m.group(1)[:12]}' (or snapshot with --ref), or gc will remove it")
    report = json.loads(run(*r, "--json", "snapshot", str(data), "--ref", "main").stdout)
    assert report["files"] == 2 and report["bytes"] == 300_006 and report["new_objects"] == 1


def test_relogging_identical_content_says_unchanged(data: Path, tenv: dict[str, str]) -> None:
    first = run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv).stdout.strip()
    assert first == "logged proj/m:v0: 2 files, 293 KiB, aliases: latest"
    again = run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv)
    assert again.stdout.strip() == "unchanged: v0 (proj/m:v0 has this content already, aliases: latest)"
    assert json.loads(run("trackio", "artifacts", "--json", "log", str(data), "-n", "m", env=tenv).stdout)["new"] is False


def test_unknown_artifact_name_suggests_the_closest(data: Path, tenv: dict[str, str]) -> None:
    run("trackio", "artifacts", "log", str(data), "-n", "my-model", env=tenv)
    run("trackio", "artifacts", "log", str(data / "a.txt"), "-n", "my-dataset", env=tenv)
    for args in (["show", "my-mdoel"], ["versions", "my-modle"], ["download", "my-mode:v0"]):
        line = one_line(run("trackio", "artifacts", *args, env=tenv, code=1).stderr)
        assert line.endswith("not found in project 'proj'; did you mean 'my-model'?"), line
    line = one_line(run("trackio", "artifacts", "show", "zzz", env=tenv, code=1).stderr)
    assert line == "trackio: Artifact 'zzz' not found in project 'proj'"


# -- 13. the same result, worded the same -------------------------------------------------------------------


def test_both_command_lines_word_a_push_the_same_way(store: list[str], data: Path, tmp_path: Path, tenv: dict[str, str]) -> None:
    pattern = rf"sent (\d+) objects? \({SIZE}\) in (\d+) packs?; (\d+) refs? updated( \(.*\))?; (\d+) requests?"
    ours = run(*store, "push", "--create", f"file://{tmp_path}/r1").stdout.strip()
    run("trackio", "artifacts", "log", str(data), "-n", "m", env=tenv)
    theirs = run("trackio", "artifacts", "--remote", f"file://{tmp_path}/r2", "push", env=tenv).stdout.strip()
    assert re.fullmatch(pattern, ours) and re.fullmatch(pattern, theirs), (ours, theirs)
    assert "1 ref updated (main);" in ours
    assert re.search(r"; 3 refs updated \(trackio/proj/artifacts/m/aliases/latest, trackio/proj/artifacts/m/versions/v0, trackio/proj/runs/[0-9a-f]+\);", theirs), theirs
    for name in ("a", "b", "c"):
        run(*store, "refs", "set", name, "main")
    many = run(*store, "push", f"file://{tmp_path}/r1").stdout.strip()
    assert re.fullmatch(r"sent 0 objects \(0 B\) in 0 packs; 3 refs updated \(a, b, c\); \d+ requests", many), many
    run(*store, "refs", "set", "d", "main~1")
    run(*store, "refs", "set", "e", "main~1")
    run(*store, "refs", "set", "f", "main~1")
    run(*store, "refs", "set", "g", "main~1")
    many = run(*store, "push", f"file://{tmp_path}/r1").stdout.strip()
    assert re.fullmatch(r"sent 0 objects \(0 B\) in 0 packs; 4 refs updated; \d+ requests", many), many  # counted, not listed
    again = run(*store, "push", f"file://{tmp_path}/r1").stdout.strip()
    assert re.fullmatch(r"sent 0 objects \(0 B\) in 0 packs; 0 refs updated; \d+ requests", again), again
    fetched = run(*store, "fetch", f"file://{tmp_path}/r1").stdout.strip()
    pulled = run("trackio", "artifacts", "--remote", f"file://{tmp_path}/r2", "pull", env=tenv).stdout.strip()
    assert re.fullmatch(pattern.replace("sent", "received"), fetched) and re.fullmatch(pattern.replace("sent", "received"), pulled)


def test_units_and_words() -> None:
    from objstore.cliutil import human_bytes, local_time, plural, signed_bytes, table

    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 10 * 1024 - 1, 300_006, 30 << 20, 5 << 40)] == [
        "0 B", "1023 B", "1.00 KiB", "1.50 KiB", "10.0 KiB", "293 KiB", "30.0 MiB", "5.00 TiB"]
    assert human_bytes(None) == "-"
    assert [signed_bytes(n) for n in (0, 5, -3000)] == ["0 B", "+5 B", "-2.93 KiB"]
    assert [plural(1, "file"), plural(0, "file"), plural(2, "entry", "entries")] == ["1 file", "0 files", "2 entries"]
    assert local_time(None) == "-" and re.fullmatch(WHEN, local_time(0.0))
    assert table(["A", "SIZE"], [["long-name", "1 B"], ["x", "10 KiB"]], right=[1]).splitlines() == [
        "A            SIZE", "long-name     1 B", "x          10 KiB"]
