"""The wheel as people install it: built from this tree, installed into fresh virtual environments
with one extra each. ``frigo[cloud]`` alone starts ``frigo cloud``, whose /healthz answers and whose
/docs loads its assets from the installed package; ``frigo[edge]`` alone runs ``frigo edge --help``
and the Pi's entry point, ``python -m edge --help``.

Slow (about a minute each when pip's cache is warm): pip installs from the index this machine
uses (its own configuration and environment, passed through) and keeps what it fetched in its cache
(``pip cache dir``), so a later run downloads nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

import httpx
import pytest

from tests.cloud.test_docs import assets_of
from tests.support.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
# Bounds on each step: building, installing the cloud's dependencies, starting a worker, stopping it.
BUILD_S = 300
INSTALL_S = 400
START_S = 60
STOP_S = 30


def run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``command`` and return its output; fail the test with the output if it fails."""
    done = subprocess.run(
        command, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def clean_env() -> dict[str, str]:
    """Return this environment without what points at the project's own venv or source tree; pip's
    own settings (index, cache, certificates) stay."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("FRIGO_")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the tree's packaged files (a build in place would leave
    build/ and egg-info behind in the working tree)."""
    source = tmp_path_factory.mktemp("source")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, source / package, ignore=ignored)
    out = tmp_path_factory.mktemp("wheel")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        cwd=out,
        timeout=BUILD_S,
        env=clean_env(),
    )
    (built,) = out.glob("frigo-*.whl")
    return built


def fresh_install(folder: Path, requirement: str) -> Path:
    """Make a virtual environment in ``folder``, install ``requirement`` into it; return its bin/."""
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "--quiet", requirement],
        cwd=folder,
        timeout=INSTALL_S,
        env=clean_env(),
    )
    return folder / "bin"


def test_the_cloud_extra_alone_runs_a_worker(wheel: Path, tmp_path: Path) -> None:
    bin_ = fresh_install(tmp_path / "venv", f"{wheel}[cloud]")
    # Only what the cloud extra brings: nothing of the demo's or the simulator's.
    missing = subprocess.run(
        [str(bin_ / "python"), "-c", "import matplotlib"], cwd=tmp_path, capture_output=True, check=False
    )
    assert missing.returncode != 0
    http_port = free_port()
    env = {
        **clean_env(),
        "FRIGO_CLOUD_DATABASE_URL": f"sqlite:///{tmp_path / 'cloud.db'}",
        # Nothing listens there: the worker keeps retrying in the background, /healthz answers.
        "FRIGO_CLOUD_MQTT__PORT": str(free_port()),
        "FRIGO_CLOUD_HTTP_PORT": str(http_port),
        "FRIGO_CLOUD_PLANNING": "false",
    }
    log = (tmp_path / "cloud.log").open("w")
    worker = subprocess.Popen(
        [str(bin_ / "frigo"), "cloud"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert worker.poll() is None, (tmp_path / "cloud.log").read_text()
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "cloud.log").read_text()
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        # The docs' pages and every file they load come from the installed packages.
        with httpx.Client(base_url=base, timeout=10) as client:
            for page in ("/docs", "/redoc"):
                answer = client.get(page)
                assert answer.status_code == 200
                for url in assets_of(answer.text).urls:
                    assert client.get(url).status_code == 200, (page, url)
            assert client.get("/metrics").status_code == 401
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(STOP_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
        finally:
            log.close()
    assert code == 0, (tmp_path / "cloud.log").read_text()


def test_the_edge_extra_alone_runs_the_agents_help(wheel: Path, tmp_path: Path) -> None:
    bin_ = fresh_install(tmp_path / "venv", f"{wheel}[edge]")
    # The Pi's install has none of the cloud's dependencies.
    for module in ("fastapi", "sqlalchemy", "numpy"):
        absent = subprocess.run(
            [str(bin_ / "python"), "-c", f"import {module}"], cwd=tmp_path, capture_output=True, check=False
        )
        assert absent.returncode != 0, module
    assert "Usage" in run([str(bin_ / "frigo"), "edge", "--help"], cwd=tmp_path, timeout=60, env=clean_env())
    # The systemd unit's entry point (deploy/frigo-edge.service).
    assert "usage" in run(
        [str(bin_ / "python"), "-m", "edge", "--help"], cwd=tmp_path, timeout=60, env=clean_env()
    )
