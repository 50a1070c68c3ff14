"""Load-generating processes: buyers (httpx against our gunicorn) and raw-SQL claimers (psycopg).

A ``LoadPool`` keeps one process per core for the whole run (``spawn``, so none inherits the
parent's database connection). For each job every process starts its share of client threads;
each thread warms up (a buyer fetches the product page for its CSRF token, a claimer connects),
and only when all threads of all processes are ready does the parent release them together, so
the measured window holds the work and nothing else. Every job stops by itself: a fixed number
of attempts per client, and a deadline.

Timestamps are ``time.monotonic()``, one clock for all processes on Linux.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import psycopg

# (outcome, started, callback sent, finished, order page path). Outcomes: "paid" (the callback
# was accepted), "sold_out" (the page said so), "claimed" (floor), anything else is an error.
Sample = tuple[str, float, float, float, str]

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_SANDBOX_PAY = re.compile(r"/pay/sandbox/([^/?]+)/\?next=([^&]+)")


@dataclass(frozen=True, slots=True)
class BuyJob:
    """Each client: fetch the product page once, then ``per_client`` times POST the Buy form
    and POST the signed sandbox callback for the payment it opened."""

    base_url: str
    product_path: str
    option: int
    amount: str
    currency: str
    clients: int
    per_client: int
    max_seconds: float
    sold_out_text: str
    first_buyer: int  # numbers this job's buyers (IP, email, device) apart from every other job's
    first_client: int = 0
    callback_url: str = ""  # the payment callbacks' own server, if not base_url


@dataclass(frozen=True, slots=True)
class ClaimJob:
    """The floor: each client, on its own connection, ``per_client`` transactions of an order
    insert plus the raw ``UPDATE … (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``."""

    dsn: str
    product_id: int
    clients: int
    per_client: int
    max_seconds: float
    first_client: int = 0


FLOOR_INSERT_ORDER = (
    "INSERT INTO bench_floor_order (product_id, email, amount) VALUES (%s, %s, %s) RETURNING id"
)
FLOOR_CLAIM = (
    "UPDATE bench_floor_key SET status = 'sold', order_id = %s, sold_at = now()"
    " WHERE id = (SELECT id FROM bench_floor_key WHERE product_id = %s"
    " AND status IN ('available', 'reserved') ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id"
)


# --- inside a worker process ------------------------------------------------------------------
def _buyer(job: BuyJob, index: int, ready: threading.Barrier, go: threading.Event) -> list[Sample]:
    from orders.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway

    signer = SandboxGateway()
    samples: list[Sample] = []
    with httpx.Client(base_url=job.base_url, timeout=job.max_seconds) as http:
        token = ""
        try:
            # Closed after the page: gunicorn drops idle keep-alive connections after 2 s, and
            # the buyer may wait longer than that for the others to get ready.
            page = http.get(job.product_path, headers={"Connection": "close"})
            match = _CSRF.search(page.text)
            token = match.group(1) if match else ""
        finally:
            ready.wait()
        go.wait()
        deadline = time.monotonic() + job.max_seconds
        for attempt in range(job.per_client):
            started = time.monotonic()
            if started > deadline:
                samples.append(("timeout", started, started, started, ""))
                break
            # Every buy is another buyer: own address (through the proxy the bench settings
            # trust), mailbox and browser, as in a drop; the risk rules and rate limits still run.
            buyer = job.first_buyer + (job.first_client + index) * job.per_client + attempt
            http.cookies.set("cv_fp", secrets.token_urlsafe(24))
            form = {
                "csrfmiddlewaretoken": token,
                "option": str(job.option),
                "quantity": "1",
                "email": f"buyer{buyer}@example.com",
                "query_password": "",
                "gateway": "sandbox",
            }
            address = f"10.{buyer >> 16 & 255}.{buyer >> 8 & 255}.{buyer & 255}"
            try:
                bought = http.post(
                    job.product_path, data=form, headers={"X-Forwarded-For": address}
                )
            except httpx.HTTPError as exc:
                samples.append(
                    (f"buy {type(exc).__name__}", started, started, time.monotonic(), "")
                )
                continue
            pay = _SANDBOX_PAY.search(bought.headers.get("location", ""))
            if bought.status_code != 302 or pay is None:
                outcome = (
                    "sold_out"
                    if bought.status_code == 400 and job.sold_out_text in bought.text
                    else f"buy {bought.status_code}"
                )
                samples.append((outcome, started, started, time.monotonic(), ""))
                if outcome == "sold_out":
                    break
                continue
            reference, order_path = pay.group(1), urlsplit(unquote(pay.group(2))).path
            trade = f"T{reference}"
            body = json.dumps(
                {
                    "event_id": f"{trade}:paid",
                    "payment_reference": reference,
                    "status": "paid",
                    "amount": job.amount,
                    "currency": job.currency,
                    "trade_id": trade,
                }
            ).encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signer.sign(body, timestamp=int(time.time())),
            }
            sent = time.monotonic()
            try:
                answer = http.post(
                    f"{job.callback_url}/pay/callback/sandbox/", content=body, headers=headers
                )
                outcome = "paid" if answer.status_code == 200 else f"callback {answer.status_code}"
            except httpx.HTTPError as exc:
                outcome = f"callback {type(exc).__name__}"
            samples.append((outcome, started, sent, time.monotonic(), order_path))
    return samples


def _claimer(
    job: ClaimJob, index: int, ready: threading.Barrier, go: threading.Event
) -> list[Sample]:
    samples: list[Sample] = []
    try:
        conn = psycopg.connect(job.dsn)
    finally:
        ready.wait()
    with conn:
        go.wait()
        deadline = time.monotonic() + job.max_seconds
        for attempt in range(job.per_client):
            started = time.monotonic()
            if started > deadline:
                samples.append(("timeout", started, started, started, ""))
                break
            with conn.cursor() as cursor:
                email = f"floor{job.first_client + index}-{attempt}@example.com"
                order = cursor.execute(FLOOR_INSERT_ORDER, (job.product_id, email, "10.00"))
                order_id = order.fetchone()[0]  # type: ignore[index]
                key = cursor.execute(FLOOR_CLAIM, (order_id, job.product_id)).fetchone()
            if key is None:
                conn.rollback()
                samples.append(("sold_out", started, started, time.monotonic(), ""))
                break
            conn.commit()
            samples.append(("claimed", started, started, time.monotonic(), ""))
    return samples


def _run_job(job: BuyJob | ClaimJob, ready_queue: Any, go: Any) -> list[Sample]:
    client = _buyer if isinstance(job, BuyJob) else _claimer
    warmed = threading.Barrier(job.clients + 1)
    release = threading.Event()
    results: list[Sample] = []
    failures: list[str] = []

    def run(index: int) -> None:
        try:
            results.extend(client(job, index, warmed, release))  # type: ignore[arg-type]
        except Exception as exc:  # report, never hang the parent
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(job.clients)]
    for thread in threads:
        thread.start()
    try:
        warmed.wait(timeout=300)
    except threading.BrokenBarrierError:
        failures.append("warm-up did not finish")
    ready_queue.put(os.getpid())
    go.wait()
    release.set()
    for thread in threads:
        thread.join(timeout=job.max_seconds + 60)
    now = time.monotonic()
    results.extend((f"error {text[:200]}", now, now, now, "") for text in failures)
    return results


def _worker(jobs: Any, ready_queue: Any, results: Any, go: Any) -> None:
    import django

    django.setup()  # the sandbox signer reads its secret from the bench settings
    from orders.gateways import sandbox  # noqa: F401  (imported once, before any timing)

    # A full collection over everything imported would pause the timing threads mid-sample.
    gc.collect()
    gc.freeze()
    while (job := jobs.get()) is not None:
        try:
            samples = _run_job(job, ready_queue, go)
        except Exception as exc:
            now = time.monotonic()
            samples = [(f"error {type(exc).__name__}: {exc}", now, now, now, "")]
        results.put(samples)


# --- in the parent ----------------------------------------------------------------------------
class LoadPool:
    def __init__(self, processes: int) -> None:
        ctx = mp.get_context("spawn")
        self.go = ctx.Event()
        self.ready: Any = ctx.Queue()
        self.results: Any = ctx.Queue()
        self.jobs: list[Any] = [ctx.Queue() for _ in range(processes)]
        self.processes = [
            ctx.Process(target=_worker, args=(jobs, self.ready, self.results, self.go), daemon=True)
            for jobs in self.jobs
        ]
        for process in self.processes:
            process.start()

    def run(self, job: BuyJob | ClaimJob) -> tuple[float, list[Sample]]:
        """Run ``job.clients`` clients spread over the processes; returns the moment they were
        released and every sample."""
        self.go.clear()
        count = len(self.processes)
        first = 0
        for number, jobs in enumerate(self.jobs):
            share = job.clients // count + (number < job.clients % count)
            jobs.put(replace(job, clients=share, first_client=first))
            first += share
        for _ in self.processes:
            self.ready.get(timeout=600)
        released = time.monotonic()
        self.go.set()
        samples: list[Sample] = []
        for _ in self.processes:
            samples.extend(self.results.get(timeout=job.max_seconds + 300))
        return released, samples

    def close(self) -> None:
        for jobs in self.jobs:
            jobs.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()  # by its own process object, i.e. its pid
