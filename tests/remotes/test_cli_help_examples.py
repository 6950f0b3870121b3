"""Every example in the command lines' ``--help`` runs verbatim, and says it worked.

The examples are parsed out of the help texts (the lines after
``Example:``); each runs through bash, as a user would paste it, in a
sandbox holding the files and refs the examples name, with the moto S3
server standing in for ``s3://bucket``. Setup steps are ordinary commands
run before; the examples themselves are never edited.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import click
import pytest
from conftest import S3Server
from remote_helpers import VENV_BIN, subprocess_env

from objstore.cli import main as objstore_main
from trackio.cli import main as trackio_main

pytestmark = pytest.mark.slow


def help_examples() -> list[str]:
    """Every example line of every command's help, in command order, without duplicates."""

    def walk(cmd: click.Command) -> list[click.Command]:
        subs = list(cmd.commands.values()) if isinstance(cmd, click.Group) else []
        return [cmd, *(c for s in subs for c in walk(s))]

    found: list[str] = []
    for cmd in walk(objstore_main) + walk(trackio_main):
        m = re.search(r"Example:(.*)", cmd.help or "", re.S)
        assert m, f"{cmd.name}: no example in its help"
        found += [line.strip() for line in m.group(1).splitlines() if line.strip()]
    return list(dict.fromkeys(found))


# (setup commands, examples): setup makes what the next examples name; examples
# are matched against the help texts (the test fails if a help example is not here).
OBJSTORE_PLAN: list[tuple[list[str], list[str]]] = [
    (
        [
            "objstore init --hash blake2b-256",
            "objstore snapshot tree/ -m one --ref main",
            "echo more >> tree/config.json",
            "objstore snapshot tree/ -m two --ref main",
            "objstore refs set scratch main",
            "objstore refs set prod main",
        ],
        [
            'objstore snapshot checkpoints/ -m "epoch 3" --ref model/latest',
            "objstore log main -n 5",
            "objstore show main",
            "objstore ls main data/ -R",
            "objstore cat main config.json",
            "objstore checkout main restored/ --path data/train.csv",
            "objstore diff main~1 main",
            "objstore refs history model/latest",
            "objstore refs list model/",
            "objstore refs set prod main~1 --expect main",
            "objstore refs delete scratch",
            "objstore refs history prod",
            "objstore init s3://bucket/store --hash blake2b-256",
            "objstore push s3://bucket/store main -o anon=false",
            "objstore fetch s3://bucket/store main --depth 1",
            "objstore clone s3://bucket/store ./store",
            "objstore -r s3://bucket/store fsck",
            "objstore gc --grace 0",
            "objstore repack",
            "objstore stats --json",
        ],
    ),
]

TRACKIO_PLAN: list[tuple[list[str], list[str]]] = [
    (
        [
            "for i in 0 1 2; do echo $i > tree/version.txt; trackio artifacts -p my_project log tree/ -n my-model --type model; done",
            "trackio artifacts -p my_project alias set my-model:v1 staging",
        ],
        [
            "trackio artifacts -p my_project log checkpoints/ -n my-model --type model -a prod",
            "trackio artifacts -p my_project list",
            "trackio artifacts -p my_project list --type model",
            "trackio artifacts -p my_project versions my-model",
            "trackio artifacts -p my_project show my-model:v3",
            "trackio artifacts -p my_project download my-model:prod",
            "trackio artifacts -p my_project download my-model:prod --root ./model",
            "trackio artifacts -p my_project alias set my-model:v3 prod",
            "trackio artifacts -p my_project alias remove my-model staging",
            "trackio artifacts -p my_project history my-model prod",
            "trackio artifacts -p my_project diff my-model:v1 my-model:v2",
            "trackio artifacts -p my_project lineage my-model:prod --format mermaid",
            "trackio artifacts --remote s3://bucket/trackio push",
            "trackio artifacts --remote s3://bucket/trackio pull",
            "trackio artifacts fsck",
            "trackio artifacts -p my_project delete my-model:v2 && trackio artifacts gc --grace 0",
            "trackio artifacts gc --grace 0",
        ],
    ),
    (
        [],
        [
            "trackio registry create models",
            'trackio registry create datasets -d "what we train on"',
            "trackio registry list --json",
            "trackio registry link my_project/my-model:v3 registry-models/classifier --alias staging",
            "trackio registry promote registry-models/classifier:v0 production",
            "trackio registry collections models",
            "trackio registry show registry-models/classifier",
        ],
    ),
    (
        ["trackio registry link my_project/my-model:v1 registry-models/classifier"],
        ["trackio registry unlink registry-models/classifier:v1", "trackio registry events models --json"],
    ),
]

# Examples that start a server: each runs until it prints its URL, the page
# answers, and Ctrl-C stops it with exit status 0 (after both plans: ./store exists).
SERVERS = [
    ("objstore ui ./store", r"at: (http://127\.0\.0\.1:\d+/)"),
    ("trackio show --project my_project --no-browser", r"\* Trackio UI launched at: (http://127\.0\.0\.1:\d+/p/my_project)"),
    ("trackio show registry --no-browser", r"\* Trackio registry UI launched at: (http://127\.0\.0\.1:\d+/registry)"),
]

# The team-server examples, in the order a team uses them: a write token, the
# server on its documented port (over ./store), a push to it with that token
# (from "mine", a clone of ./store one commit ahead), the token revoked.
TOKEN_ADD = "objstore token add alice --scope write --tokens tokens.json"
TOKEN_LIST = "objstore token list --tokens tokens.json"
TOKEN_REVOKE = "objstore token revoke alice --tokens tokens.json"
SERVE = "objstore serve ./store --tokens tokens.json --port 8420"
SERVER_PUSH = "objstore -r mine push http://127.0.0.1:8420 main     # OBJSTORE_TOKEN=..."

# The top-level help's examples make their own ./store: they run in ./intro.
INTRO = ["objstore -r store init", 'objstore -r store snapshot data/ -m "first" --ref main', "objstore -r store log main"]


def test_every_help_example_runs_verbatim(tmp_path: Path, s3_server: S3Server) -> None:
    s3 = s3_server.client()
    s3.create_bucket(Bucket="bucket")
    box = tmp_path / "box"
    for rel, size in [("checkpoints/model.bin", 200_000), ("checkpoints/config.json", 30), ("data/train.csv", 12),
                      ("tree/config.json", 16), ("tree/data/train.csv", 12)]:
        (box / rel).parent.mkdir(parents=True, exist_ok=True)
        (box / rel).write_bytes(os.urandom(size) if rel.endswith(".bin") else b"x" * size)
    (box / "intro").mkdir()
    (box / "intro" / "data").mkdir()
    (box / "intro" / "data" / "x.txt").write_text("x\n")
    env = subprocess_env(**s3_server.env(), TRACKIO_DIR=str(tmp_path / "trackio"),
                         PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("OBJSTORE_REPO", None)

    def bash(command: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["bash", "-c", command], cwd=box, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{command!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    ran: list[str] = []
    for command in INTRO:
        bash(f"cd intro && {command}")
        ran.append(command)
    for setup, examples in OBJSTORE_PLAN + TRACKIO_PLAN:
        for command in setup:
            bash(command)
        for command in examples:
            proc = bash(command)
            assert "Traceback" not in proc.stderr, proc.stderr
            ran.append(command)
    for command, pattern in SERVERS:
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=box, env={**env, "PYTHONUNBUFFERED": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            m = re.search(pattern, line)
            assert m, f"{command!r} printed {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None and proc.stderr else ''}"
            with urllib.request.urlopen(m.group(1), timeout=60) as page:
                assert page.status == 200
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        assert code == 0, f"{command!r} exited {code} on Ctrl-C"
        ran.append(command)
    token = bash(TOKEN_ADD).stdout.split()[0]
    ran.append(TOKEN_ADD)
    assert "alice" in bash(TOKEN_LIST).stdout and token not in bash(TOKEN_LIST).stdout
    ran.append(TOKEN_LIST)
    bash("objstore clone ./store mine && objstore -r mine snapshot tree/ -m three --ref main")
    server = subprocess.Popen(["bash", "-c", f"exec {SERVE}"], cwd=box, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request("http://127.0.0.1:8420/api/v1/info", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert answer.status == 200
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "objstore serve did not come up on :8420"
                time.sleep(0.2)
        env["OBJSTORE_TOKEN"] = token
        pushed = bash(SERVER_PUSH)
        assert "1 ref updated" in pushed.stdout, pushed.stdout
        del env["OBJSTORE_TOKEN"]
        ran.extend([SERVE, SERVER_PUSH])
    finally:
        server.send_signal(signal.SIGINT)
        served = server.wait(timeout=60)
    assert served == 0, f"{SERVE!r} exited {served} on Ctrl-C"
    assert bash("objstore -r store log main -n 1").stdout.count("three") == 1
    bash(TOKEN_REVOKE)
    ran.append(TOKEN_REVOKE)
    assert "alice" not in bash(TOKEN_LIST).stdout
    assert sorted(ran) == sorted(help_examples()), "a --help example is not in the plan (or the plan names one no help shows)"
    assert (box / "restored" / "data" / "train.csv").read_bytes() == (box / "tree" / "data" / "train.csv").read_bytes()
    assert (box / "model" / "model.bin").read_bytes() == (box / "checkpoints" / "model.bin").read_bytes()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bucket").get("Contents", [])}
    assert any(k.startswith("store/refs/") for k in keys) and any(k.startswith("trackio/") for k in keys)
