"""One Ray cluster for the session's Ray tests: `ray start --head` on 127.0.0.1 with 2 CPUs and one
*logical* GPU (Ray lets a node declare one; nothing uses a real GPU), token authentication on, stopped
when the last test of tests/ray/ has run (so it does not run beside the later test folders). Runners
reach it through DLLAB_RAY_ADDRESS=127.0.0.1:<port>, as a second app server would.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS, free_port

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the Ray head did not listen on port {port} within {timeout:.0f}s")


def stop_group(proc: subprocess.Popen, timeout: float = 3.0) -> None:
    """SIGTERM to the process group this fixture started, then SIGKILL to what is left of it (on
    SIGTERM a node drains for up to 30 s first; a test cluster has nothing to drain)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="package")   # one head for the session's Ray tests, gone after them
def ray_cluster():
    """The address of the session's Ray head ("127.0.0.1:<port>"). Its token is in os.environ for
    the session, so every runner's driver (and every server a test starts) inherits it."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    # The head's node address stays 127.0.0.1 (Ray otherwise swaps in the network address).
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log = open(ARTIFACTS / "ray-head.log", "w")
    cmd = [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=1",
           "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(proc)
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """The digits data set, written once for the session."""
    from engine.data import digits_folder
    return digits_folder(tmp_path_factory.mktemp("data") / "digits")
