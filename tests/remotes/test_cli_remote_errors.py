"""S3 failures at the command line (no credentials, no bucket, no rights): one line naming the URL and what to do, exit code 1."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import S3Server
from remote_helpers import VENV_BIN, free_port, stop_process, subprocess_env, tail


def run(args: list[str], env: dict[str, str], cwd: Path, code: int) -> str:
    proc = subprocess.run([str(VENV_BIN / args[0]), *args[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert code == 0 or (len(lines) == 1 and "Traceback" not in proc.stderr), proc.stderr
    return lines[0] if lines else ""


@pytest.fixture
def local(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory with a store (``.objstore``, one commit on main) and a trackio dir with one version."""
    env = subprocess_env(TRACKIO_DIR=str(tmp_path / "td"), TRACKIO_PROJECT="proj", AWS_EC2_METADATA_DISABLED="true",
                         AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "OBJSTORE_REPO"):
        env.pop(key, None)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(os.urandom(10_000))
    run(["objstore", "init"], env, tmp_path, 0)
    run(["objstore", "snapshot", "data", "--ref", "main"], env, tmp_path, 0)
    run(["trackio", "artifacts", "log", "data", "-n", "m"], env, tmp_path, 0)
    return tmp_path, env


def test_no_credentials(s3_server: S3Server, local: tuple[Path, dict[str, str]]) -> None:
    cwd, env = local
    env = {**env, "AWS_ENDPOINT_URL": s3_server.endpoint}
    url = f"s3://{s3_server.new_bucket()}/store"
    for args in (["objstore", "push", url], ["objstore", "fetch", url], ["trackio", "artifacts", "--remote", url, "push"]):
        line = run(args, env, cwd, 1)
        assert line.endswith(f": {url}: no valid S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                             "(or AWS_PROFILE), or pass -o key=... -o secret=... (-o anon=true for a public bucket)"), line
    # the same credentials given with -o (before or after the subcommand) work
    run(["objstore", "-o", "key=testing", "push", url, "-o", "secret=testing", "-q", "--create"], env, cwd, 0)


def test_missing_bucket(s3_server: S3Server, local: tuple[Path, dict[str, str]]) -> None:
    cwd, env = local
    env = {**env, **s3_server.env()}
    url = f"s3://missing-{uuid.uuid4().hex[:12]}/store"
    line = run(["objstore", "push", url], env, cwd, 1)  # push never creates: the missing bucket is named with the URL
    assert line.startswith(f"objstore: no objstore repository (The specified bucket does not exist) at '{url}'; create one"), line
    line = run(["objstore", "push", "--create", url], env, cwd, 1)
    assert line == f"objstore: {url}: bucket or path not found (The specified bucket does not exist); check the URL", line
    line = run(["trackio", "artifacts", "--remote", url, "push"], env, cwd, 1)
    assert line.startswith(f"trackio: {url}: bucket or path not found"), line
    line = run(["objstore", "clone", url, str(cwd / "clone")], env, cwd, 1)
    assert line == f"objstore: no objstore repository at '{url}'", line


@pytest.fixture(scope="module")
def locked_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server that enforces IAM, a bucket, and the keys of a user with no rights on it."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    # the first 3 requests (create the user, its key, the bucket) go unchecked; every later one needs rights
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start:\n{tail(log)}") from None
                time.sleep(0.05)
        admin = {"endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        boto3.client("s3", **admin).create_bucket(Bucket="locked")
        yield "s3://locked/store", {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                    "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        stop_process(proc)


def test_permission_denied(locked_bucket: tuple[str, dict[str, str]], local: tuple[Path, dict[str, str]]) -> None:
    url, creds = locked_bucket
    cwd, env = local
    env = {**env, **creds}
    line = run(["objstore", "push", url], env, cwd, 1)
    assert line == f"objstore: {url}: permission denied (Forbidden); check your credentials and access rights", line
    line = run(["trackio", "artifacts", "--remote", url, "push"], env, cwd, 1)
    assert line.startswith(f"trackio: {url}: permission denied"), line
