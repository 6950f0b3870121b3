"""Real servers for the remote tests: a moto S3 server and an OpenSSH sftp server.

Both are started once per session, bound to 127.0.0.1 on free ports, and
stopped at the end. Every test gets a fresh location on them (a new bucket,
a new directory), described by a ``remote_helpers.Target``: its URL, the
fsspec storage options to reach it, and raw access for inspecting or
tampering with what a push left there.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import (
    S3_KEY,
    S3_REGION,
    S3_SECRET,
    VENV_BIN,
    Target,
    free_port,
    reset_trackio,
    stop_process,
    tail,
)

# -- S3 (moto) -------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str
    log: Path

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name=S3_REGION,
        )

    def storage_options(self) -> dict[str, Any]:
        return {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": S3_REGION},
        }

    def env(self) -> dict[str, str]:
        """What a child process needs to reach this server through botocore's own settings."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": S3_REGION,
        }

    def new_bucket(self) -> str:
        name = f"objstore-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``moto_server`` (the one next to this interpreter) on a free port of 127.0.0.1."""
    exe = VENV_BIN / "moto_server"
    if not exe.exists():
        found = shutil.which("moto_server")
        if found is None:
            pytest.skip("moto_server is not installed (pip install 'moto[server]')")
        exe = Path(found)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {endpoint}:\n{tail(log)}") from None
                time.sleep(0.05)
        yield S3Server(endpoint, log)
    finally:
        stop_process(proc)


@pytest.fixture
def s3_target(s3_server: S3Server) -> Target:
    """A fresh bucket on the moto server: ``s3://<bucket>/store``."""
    bucket = s3_server.new_bucket()
    return Target("s3", f"s3://{bucket}/store", s3_server.storage_options())


# -- SFTP (OpenSSH) --------------------------------------------------------------------

SSHD = "/usr/sbin/sshd"


@dataclass
class SftpServer:
    port: int
    base_url: str
    storage_options: dict[str, Any]
    log: Path


def _keypair(path: Path) -> str:
    """Write an RSA private key at ``path``; return its public ``authorized_keys`` line."""
    if shutil.which("ssh-keygen"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return Path(f"{path}.pub").read_text().strip()
    import paramiko

    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(path))
    return f"{key.get_name()} {key.get_base64()}"


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    """OpenSSH's sshd with internal-sftp on a free port of 127.0.0.1, key auth only."""
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is not installed (apt-get install openssh-server): the sftp tests need a real sshd")
    pytest.importorskip("paramiko")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    host_key = d / "host_rsa"
    client_key = d / "client_rsa"
    _keypair(host_key)
    authorized = d / "authorized_keys"
    authorized.write_text(_keypair(client_key) + "\n")
    for p in (authorized, client_key, host_key):
        os.chmod(p, 0o600)
    port = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {d / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin yes",
                "StrictModes no",
                "UsePAM no",
                "MaxStartups 100:30:200",
                "MaxSessions 100",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
    except PermissionError:
        pass  # not root: sshd runs without privilege separation
    log = d / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {proc.returncode}:\n{tail(log)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not answer on port {port}:\n{tail(log)}")
            time.sleep(0.05)
        opts = {
            "username": getpass.getuser(),
            "key_filename": str(client_key),
            "port": port,
            "look_for_keys": False,
            "allow_agent": False,
        }
        yield SftpServer(port, f"sftp://127.0.0.1:{port}", opts, log)
    finally:
        stop_process(proc)


@pytest.fixture
def sftp_target(sftp_server: SftpServer, tmp_path: Path) -> Target:
    """A fresh directory on this machine, reached through the sftp server."""
    root = tmp_path / "sftp-remote"
    root.mkdir()
    return Target("sftp", f"{sftp_server.base_url}{root}/store", dict(sftp_server.storage_options))


# -- the in-process ones ------------------------------------------------------------


@pytest.fixture
def file_target(tmp_path: Path) -> Target:
    return Target("file", f"file://{tmp_path / 'file-remote' / 'store'}")


@pytest.fixture
def memory_target() -> Iterator[Target]:
    import fsspec

    root = f"/objstore-remote-tests/{uuid.uuid4().hex}"
    yield Target("memory", f"memory://{root}/store")
    try:
        fsspec.filesystem("memory").rm(root, recursive=True)
    except FileNotFoundError:
        pass


ALL_KINDS = ["file", "memory", "s3", "sftp", "server"]


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    """Parametrize with ``@pytest.mark.parametrize("target", [...], indirect=True)``."""
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]


# -- trackio isolation -----------------------------------------------------------------


@pytest.fixture
def trackio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """A fresh TRACKIO_DIR and cwd; call the returned function to move to another TRACKIO_DIR
    (a second "machine"): everything open in this process is forgotten first."""
    reset_trackio()
    monkeypatch.delenv("TRACKIO_REMOTE", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    def use(name: str) -> Path:
        reset_trackio()
        home = tmp_path / name
        monkeypatch.setenv("TRACKIO_DIR", str(home))
        return home

    use("trackio-home")
    try:
        yield use
    finally:
        reset_trackio()


# -- objstore serve ----------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    """``objstore serve`` on a fresh local store, with read, write and admin tokens."""
    from server_helpers import make_tokens, start_server

    tokens_file = tmp_path / "tokens.json"
    tokens = make_tokens(tokens_file)
    proc = start_server(tmp_path / "served", tmp_path, tokens_file=tokens_file, tokens=tokens)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def server_target(server: Any) -> Target:
    """The repository behind a fresh ``objstore serve`` (write token); raw access goes to its folder."""
    return Target("server", server.url, server.options("write"), local_root=server.store)
