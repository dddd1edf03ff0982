"""A local Google Cloud Storage for tests: the gcp-storage-emulator server, plus a token endpoint.

The emulator (PyPI ``gcp-storage-emulator``) serves the JSON API, uploads, downloads and the batch
API that Beam's file sinks use to rename temporary shards. ``STORAGE_EMULATOR_HOST`` points the
google-cloud-storage client, and so Beam's GCS file system, at it.

Credentials: Beam looks up Google application-default credentials in every process and, finding
none, retries with back-off for about 30 seconds before connecting anonymously. So the fixture
writes a service-account key (a fresh RSA key) whose ``token_uri`` is a token endpoint on 127.0.0.1:
the real google-auth flow runs (look-up, signed JWT, token exchange, bearer header) and finishes at
once, with no network. (An ``authorized_user`` file would not do: google-auth always sends those to
Google's own token endpoint.)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from helpers import free_port


def wait_for_port(port: int, process: subprocess.Popen, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"gcp-storage-emulator did not listen on port {port} within {deadline_s} s")


class _TokenHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(
            {"access_token": "local-test-token", "expires_in": 3600, "token_type": "Bearer"}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):  # keep test output clean
        pass


def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@contextlib.contextmanager
def gcs_emulator(workdir: Path) -> Iterator[str]:
    """Run the emulator and token endpoint; set the environment for this and child processes.

    Yields the emulator's URL. Restores the environment and stops both servers afterwards.
    """
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tokens = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    credentials = workdir / "application_default_credentials.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "local-test-project",
                "private_key_id": "local-test",
                "private_key": _private_key_pem(),
                "client_email": "tests@local-test-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"http://127.0.0.1:{tokens.server_address[1]}/token",
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    saved = {
        key: os.environ.get(key)
        for key in (
            "STORAGE_EMULATOR_HOST",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_CLOUD_PROJECT",
        )
    }
    os.environ.update(
        STORAGE_EMULATOR_HOST=url,
        GOOGLE_APPLICATION_CREDENTIALS=str(credentials),
        GOOGLE_CLOUD_PROJECT="local-test-project",
    )
    try:
        wait_for_port(port, server)
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tokens.shutdown()
        server.terminate()
        server.wait(timeout=10)
