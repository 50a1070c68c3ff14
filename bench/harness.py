"""The benchmark's plumbing: its own database, its own gunicorn, the machine it ran on, and the
statistics every figure is reported with. Nothing here knows what Cardvault does."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

HOST = "127.0.0.1"  # every load this benchmark makes targets this address only


# --- statistics -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Spread:
    """A figure over several runs: median, min and max."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def fmt(self, digits: int = 1, unit: str = "") -> str:
        return f"{self.median:.{digits}f}{unit} [{self.low:.{digits}f}–{self.high:.{digits}f}]"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 samples is the 99th)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- the machine ----------------------------------------------------------------------------
def machine() -> dict[str, str]:
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = platform.processor() or ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --- the database ---------------------------------------------------------------------------
def _admin_connection(params: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=params.get("HOST") or HOST,
        port=params.get("PORT") or 5432,
        user=params.get("USER") or "postgres",
        password=params.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def create_database(params: dict) -> None:
    with _admin_connection(params) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["NAME"])))


def drop_database(params: dict) -> None:
    """Drop this run's database (its name carries this run's pid), even with sessions left."""
    with _admin_connection(params) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(params["NAME"])
            )
        )


def server_version(params: dict) -> str:
    with _admin_connection(params) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# --- gunicorn -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """``gunicorn config.wsgi`` on a free port of 127.0.0.1, in its own process group, stopped by
    its process id (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(
        self, *, env: dict[str, str], workers: int, threads: int, log: Path, nice: int = 0
    ) -> None:
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.threads = threads
        self.log = log
        self.nice = nice
        self.niced = ""  # how the CPU priority was applied, for the report
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi:application",
            "--config",
            "python:config.gunicorn",
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--error-logfile",
            str(self.log),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(command, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s: {self.tail()}")

    def set_priority(self) -> None:
        """Apply ``nice`` to the running server (its master, workers and their threads; workers
        started later inherit it). Once; without ``nice`` nothing happens."""
        if self.nice and self.process is not None and not self.niced:
            self._set_priority(self.process.pid)

    def _set_priority(self, pid: int) -> None:
        """Give this server's processes another CPU weight, as ``cpu_shares`` gives a container
        in production (docker-compose.yml). With the kernel's autogroup scheduling (Linux
        desktops and many servers) a process's nice value only counts within its session, and
        the server runs in a session of its own, so the session's group weight is set too.
        Best effort: raising a priority (a negative value) needs CAP_SYS_NICE, and the report
        says what was applied."""
        applied = []
        try:
            os.setpriority(os.PRIO_PGRP, pid, self.nice)
            applied.append(f"nice {self.nice}")
        except OSError:
            pass
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(self.nice))
            applied.append(f"autogroup nice {self.nice}")
        except OSError:
            pass
        self.niced = ", ".join(applied) or f"nice {self.nice} not applied"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pid = self.process.pid
        os.killpg(pid, signal.SIGTERM)  # the group we created: the master and its workers
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""


# --- page load ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PageLoad:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*?timeout (\d+)")


def page_load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def page_load(url: str, *, connections: int, seconds: float) -> PageLoad:
    """Requests per second at ``connections`` concurrent keep-alive connections for ``seconds``:
    wrk if it is installed, else a thread-per-connection httpx loop (slower, so it loads the two
    cores itself; compare only ratios measured with the same tool)."""
    if page_load_tool() == "wrk":
        return _wrk(url, connections=connections, seconds=seconds)
    return _python_load(url, connections=connections, seconds=seconds)


def _wrk(url: str, *, connections: int, seconds: float) -> PageLoad:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
            "--latency",
            "--timeout",
            "10s",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = _WRK_RPS.search(out)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {pct: float(v) * scale[unit] for pct, v, unit in _WRK_LATENCY.findall(out)}
    errors = sum(int(a or 0) + int(b or 0) for a, b in _WRK_ERRORS.findall(out))
    return PageLoad(float(rps.group(1)), latency.get("50", 0.0), latency.get("99", 0.0), errors)


def _python_load(url: str, *, connections: int, seconds: float) -> PageLoad:
    import threading

    samples: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + seconds

    def client() -> None:
        mine: list[float] = []
        failed = 0
        with httpx.Client(timeout=10) as http:
            while (now := time.monotonic()) < stop_at:
                try:
                    ok = http.get(url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                mine.append((time.monotonic() - now) * 1000)
                failed += not ok
        with lock:
            samples.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    return PageLoad(
        len(samples) / elapsed, percentile(samples, 50), percentile(samples, 99), errors[0]
    )
