"""A real S3 endpoint for the tests: moto's server (``moto_server``, installed with ``moto[server]``).

One server per session, started as a subprocess on a free loopback port; the ``s3`` fixture wipes it
(``POST /moto-api/reset``) before each test and creates the bucket ``artifacts``. Used by
``tests/kubernetes/test_s3.py`` and ``tests/kubernetes/test_executor.py``; import the fixtures into the
test module. Without ``moto_server`` next to the test interpreter the tests are skipped with that
reason printed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.s3 import S3Config, S3Credentials, SecretKeyRef

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
BUCKET = "artifacts"
# moto accepts any keys; these stand in for what a Secret would hold.
ACCESS_KEY, SECRET_KEY = "test-access", "test-secret"


@dataclass
class MotoS3:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        """host:port, as an artifact repository's ``endpoint`` says it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def client(self) -> Any:
        """A boto3 client of its own, to look at the bucket independently of the code under test."""
        import boto3.session
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )

    def config(self, **changes: Any) -> S3Config:
        """The repository configuration for this server's ``artifacts`` bucket."""
        base = S3Config(
            bucket=BUCKET,
            endpoint=self.endpoint,
            insecure=True,
            access_key_secret=SecretKeyRef("s3-creds", "accesskey"),
            secret_key_secret=SecretKeyRef("s3-creds", "secretkey"),
        )
        return replace(base, **changes)

    @property
    def credentials(self) -> S3Credentials:
        return S3Credentials(access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    def read(self, key: str, bucket: str = BUCKET) -> bytes:
        body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def keys(self, bucket: str = BUCKET) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in listing.get("Contents") or ())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(log: Path) -> MotoS3:
    port = _free_port()
    out = open(log, "wb")  # noqa: SIM115 - the server writes to it for the whole session
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    server = MotoS3(port=port, process=process, log=log)
    deadline = time.monotonic() + 30
    while True:
        if not server.alive:
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=1):
                return server
        except urllib.error.HTTPError:
            return server  # it answers
        except OSError:
            if time.monotonic() > deadline:
                _stop(server)
                raise RuntimeError(f"moto_server did not answer within 30 s:\n{server.log_tail()}") from None
            time.sleep(0.05)


def _stop(server: MotoS3) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    if not MOTO_SERVER.exists():
        reason = f"moto_server not found at {MOTO_SERVER} (pip install 'moto[server]')"
        print(reason)
        pytest.skip(reason)
    server = _start(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        _stop(server)


@pytest.fixture
def s3(moto_server: MotoS3) -> MotoS3:
    """The session's S3 server, emptied, with the bucket ``artifacts``."""
    if not moto_server.alive:
        print(f"moto_server had died; restarting it. Its log ends:\n{moto_server.log_tail()}")
        fresh = _start(moto_server.log)
        moto_server.port, moto_server.process = fresh.port, fresh.process
    moto_server.reset()
    moto_server.client().create_bucket(Bucket=BUCKET)
    return moto_server
