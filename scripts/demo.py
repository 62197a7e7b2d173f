"""`make demo`: the main job on the embedded SQLite default, end to end.

Runs the real `emrops` commands a DevOps person would run, against the default
database (var/emrsim.db beside the working directory), prints each command and
what happened, and exits non-zero when any step fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
EMROPS = [sys.executable, "-m", "emrops"]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def emrops(*args: str, parse_json: bool = False) -> object:
    print("$ emrops " + " ".join(args), flush=True)
    proc = subprocess.run([*EMROPS, *args], cwd=ROOT, capture_output=True, text=True)
    if proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    if proc.returncode != 0:
        sys.exit(f"demo failed: `emrops {' '.join(args)}` exited {proc.returncode}")
    if parse_json:
        return json.loads(proc.stdout)
    if proc.stdout.strip():
        print(proc.stdout.rstrip())
    return None


def http(method: str, url: str, body: dict | None = None) -> tuple[int, Any, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read().decode(), exc.code, exc.headers
    try:
        return status, json.loads(raw), headers
    except json.JSONDecodeError:
        return status, raw, headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"demo failed: the sim server exited with {proc.returncode}")
        try:
            if http("GET", f"{base}/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("demo failed: the sim server did not become healthy")


def exercise_api(base: str) -> None:
    step("exercise the REST API and a WebSocket")
    status, scenarios, _ = http("GET", f"{base}/api/scenarios")
    assert status == 200 and scenarios["items"], scenarios
    scenario = scenarios["items"][0]
    status, session, _ = http("POST", f"{base}/api/sessions", {"scenario_id": scenario["id"]})
    assert status == 201, session
    sid = session["id"]
    print(f"started session {sid} for scenario '{scenario['title']}'")
    ws_url = base.replace("http://", "ws://") + f"/ws/sessions/{sid}?after=0"
    questions = ["Hello, what brings you in today?", "When did the pain start?", "Any allergies?"]
    with connect(ws_url, open_timeout=10) as ws:
        for question in questions:
            status, pair, _ = http(
                "POST", f"{base}/api/sessions/{sid}/messages", {"content": question}
            )
            assert status == 201, pair
            print(f"  student: {pair['student']['content']}")
            print(f"  patient: {pair['patient']['content']}")
        seen: list[int] = []
        deadline = time.monotonic() + 10
        vitals = 0
        while len(seen) < 2 * len(questions) and time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if frame["type"] == "message":
                seen.append(frame["data"]["id"])
            elif frame["type"] == "vitals":
                vitals += 1
    assert len(seen) == 2 * len(questions) == len(set(seen)), seen
    print(f"websocket delivered {len(seen)} messages (no duplicates) and {vitals} vitals frames")
    status, page, _ = http("GET", f"{base}/api/sessions/{sid}/messages?after=0")
    assert status == 200 and len(page["items"]) == 2 * len(questions), page
    print(f"history page: {len(page['items'])} messages, next_after={page['next_after']}")

    step("maintenance mode: writes refused, reads keep working")
    emrops("sim", "maintenance", "on", "--message", "demo maintenance window")
    time.sleep(1.2)
    status, body, headers = http(
        "POST", f"{base}/api/sessions/{sid}/messages", {"content": "still there?"}
    )
    print(f"write during maintenance -> {status}, Retry-After={headers.get('Retry-After')}: {body}")
    assert status == 503 and headers.get("Retry-After"), body
    assert http("GET", f"{base}/api/sessions/{sid}")[0] == 200
    emrops("sim", "maintenance", "off")
    status, ready, _ = http("GET", f"{base}/ready")
    print(f"/ready -> {status} {ready}")
    metrics = http("GET", f"{base}/metrics")[1]
    lines = [line for line in str(metrics).splitlines() if line and not line.startswith("#")]
    print(f"/metrics: {len(lines)} samples")


def main() -> None:
    os.chdir(ROOT)
    step("initialise and seed the embedded SQLite database (var/emrsim.db)")
    emrops("sim", "init-db")
    emrops("config", "show")
    # --append: a second `make demo` adds to var/emrsim.db instead of being refused
    emrops(
        "sim",
        "seed",
        "--sessions",
        "200",
        "--messages-per-session",
        "20",
        "--seed",
        "42",
        "--append",
    )

    step("serve the simulation server")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"$ emrops sim serve --port {port}")
    server = subprocess.Popen([*EMROPS, "sim", "serve", "--port", str(port)], cwd=ROOT)
    try:
        wait_healthy(base, server)
        exercise_api(base)
        step("load test the server with budgets (the CI gate)")
        emrops(
            "loadtest",
            "run",
            "--url",
            base,
            "--scenario",
            "chat",
            "--rate",
            "20/s",
            "--duration",
            "5s",
            "--budget",
            "p95<2s",
            "--budget",
            "error_rate<1%",
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            sys.exit("demo failed: the sim server did not stop on SIGTERM")
    print(f"sim server stopped on SIGTERM (exit {code})")

    step("back up, verify, list and rotate the demo database (store: ./backups)")
    emrops("backup", "run", "--label", "demo")
    emrops("backup", "verify", "--latest")
    emrops("backup", "list")
    emrops("backup", "rotate", "--keep-last", "3", "--keep-daily", "7", "--dry-run")
    emrops("backup", "rotate", "--keep-last", "3", "--keep-daily", "7")
    print("\ndemo finished: every step succeeded")
    print(
        "\nemrops is installed in .venv, not on your PATH. To type `emrops ...` directly:\n"
        "  source .venv/bin/activate      # this shell only\n"
        "  pipx install .                 # or: for your user, in its own environment\n"
        "or call it as .venv/bin/emrops."
    )


if __name__ == "__main__":
    main()
