"""``intentflow local up`` as a user runs it: a subprocess, real parts, signals."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests import support

LOCAL_ENV_KEYS = {
    "INTENTFLOW_API_URL",
    "INTENTFLOW_KAFKA_BROKERS",
    "INTENTFLOW_CLICKHOUSE_URL",
    "INTENTFLOW_WRITE_KEY",
    "INTENTFLOW_SERVER_KEY",
    "INTENTFLOW_READ_KEY",
    "INTENTFLOW_ADMIN_KEY",
}


def local_up(data_dir: Path, api_port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "pipeline.cli", "local", "up", "--no-simulate"),
                *("--data-dir", str(data_dir), "--api-port", str(api_port)),
            ],
            cwd=support.PROJECT_ROOT,
            env=support.child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def health(api_url: str) -> dict | None:
    try:
        response = httpx.get(f"{api_url}/v1/health", timeout=3)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_up_healthy_then_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    api_port = support.free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    log_path = tmp_path / "local-up.log"
    stack = local_up(data_dir, api_port, log_path)
    try:
        started = time.monotonic()
        answer = None
        while answer is None and time.monotonic() - started < 60:
            assert stack.poll() is None, log_path.read_text()
            time.sleep(0.5)
            answer = health(api_url)
        assert answer is not None, f"not healthy within 60s:\n{log_path.read_text()}"
        assert answer["status"] == "ok"
        assert {c["status"] for c in answer["components"].values()} == {"ok"}

        env_file = data_dir / "local.env"
        support.wait_for(env_file.exists, 5, "local.env")
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert set(values) >= LOCAL_ENV_KEYS
        assert values["INTENTFLOW_API_URL"] == api_url
        assert values["INTENTFLOW_WRITE_KEY"].startswith("wk_")
        # The demo shop's catalog is loaded, pictures on this API (the stack's own URL).
        server = {"Authorization": f"Bearer {values['INTENTFLOW_SERVER_KEY']}"}
        camera = httpx.get(f"{api_url}/v1/products/cam-001", headers=server, timeout=5)
        assert camera.status_code == 200, camera.text
        assert camera.json()["image_url"] == f"{api_url}/demo/images/cam-001.png"
        picture = httpx.get(camera.json()["image_url"], timeout=5)
        assert picture.headers["content-type"] == "image/png"
        # The shop's backend holds the stack's server key: its orders reach the collector.
        order = {
            "checkout_id": "00000000-0000-4000-8000-000000000001",
            "anonymous_id": "anon-stack",
            "user_id": "stack-shopper",
            "items": [{"product_id": "cam-001", "quantity": 1}],
        }
        placed = httpx.post(f"{api_url}/demo/api/orders", json=order, timeout=10)
        assert placed.status_code == 200, placed.text
        output = log_path.read_text()
        assert f"{api_url}/docs" in output and f"{api_url}/tracker.js" in output
        # Each pipeline process serves its own registry on its own port.
        metrics = dict(
            (line.split()[2].strip("()"), line.split()[1])
            for line in output.splitlines()
            if line.strip().startswith("metrics ")
        )
        assert set(metrics) == {"worker-0", "dispatcher", "campaigns", "api"}, output
        assert len(set(metrics.values())) == len(metrics)
        for url in metrics.values():
            samples = support.scrape_metrics(url)
            assert support.metric_value(samples, "process_resident_memory_bytes") > 0

        tree = support.descendants(stack.pid)
        # broker, warehouse, one worker, API
        assert len(tree) >= 4, tree
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=40) == 0, log_path.read_text()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
    assert support.pids_alive(tree) == set(), "children outlived the stack"
    assert support.pids_mentioning(str(data_dir)) == set()


def test_taken_api_port_fails_fast_naming_the_api(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log_path = tmp_path / "local-up.log"
        stack = local_up(tmp_path / "stack", port, log_path)
        try:
            status = stack.wait(timeout=30)
        finally:
            if stack.poll() is None:
                stack.kill()
                stack.wait()
    output = log_path.read_text()
    assert status != 0
    assert f"api: port {port} on 127.0.0.1 is already in use" in output
    assert not (tmp_path / "stack" / "logs").exists(), "nothing should have been started"


def test_a_dying_part_is_named_and_stops_the_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    api_port = support.free_port()
    log_path = tmp_path / "local-up.log"
    stack = local_up(data_dir, api_port, log_path)
    try:
        support.wait_for(
            lambda: health(f"http://127.0.0.1:{api_port}") is not None, 60, "healthy stack"
        )
        tree = support.descendants(stack.pid)
        (api,) = [pid for pid in tree if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(api, signal.SIGKILL)
        assert stack.wait(timeout=40) == 1
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
    assert "intentflow local: api: exited with status -9" in log_path.read_text()
    assert support.pids_alive(tree) == set()
