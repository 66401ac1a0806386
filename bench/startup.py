"""Start-to-ready time of `guard serve` on an existing SQLite database.

Starts guard RUNS times in WORKDIR (which already holds ./data/guard.db), measuring
from just before the process is spawned to the first 200 from /health/ready, polled
every millisecond over a raw socket (no client start-up cost in the figure). With
DATABASE_URL in the environment (and REDIS_URL, REDIS_KEY_PREFIX, GUARD_MASTER_KEY),
guard starts on that database instead.

    python3 bench/startup.py GUARD_BINARY WORKDIR RUNS
"""

import os
import signal
import socket
import statistics
import subprocess
import sys
import time

PORT = int(os.environ.get("GUARD_PORT", "18090"))


def ready() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=0.2) as s:
            s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def main() -> None:
    binary, workdir, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    env = {"GUARD_LISTEN": f"127.0.0.1:{PORT}", "LOG_OUTPUT": "stderr"}
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "GUARD_MASTER_KEY", "RATE_LIMIT_ENABLED",
                 "BRUTE_FORCE_PROTECTION"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if "DATABASE_URL" not in env and not os.path.exists(os.path.join(workdir, "data", "guard.db")):
        sys.exit("no existing database in WORKDIR/data: run guard there once first")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen([binary, "serve"], cwd=workdir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not ready():
            if time.perf_counter() - started > 10:
                proc.kill()
                sys.exit("guard did not become ready within 10 s")
            time.sleep(0.001)
        times.append((time.perf_counter() - started) * 1000)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    times.sort()
    where = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(f"start to ready on an existing {where} database ({runs} runs): "
          f"median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
