"""Where a request's time goes: queries and server time per request on each benchmarked path,
in-process (Django's test client, no gunicorn, no network), and a cProfile of one path.

    python -m bench.profile                 # the table
    python -m bench.profile --cprofile buy  # plus the 30 most expensive functions of a buy

Uses a database of its own like ``bench.run`` and drops it at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--cprofile", help="bare, store, product, buy, callback or order")
    parser.add_argument("--sql", help="print the queries of this path")
    args = parser.parse_args(argv)

    os.environ["CARDVAULT_BENCH_RUN"] = f"profile{os.getpid()}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from bench.run import World, bench_environment, product_path

    with bench_environment(os.environ["CARDVAULT_BENCH_RUN"]):
        world = World()
        shown = world.storefront()
        stock = world.product(world.buy, args.repeat * 8 + 10, prefix="PROFILE")
        paths = Paths(world, shown, stock, product_path)
        # CPU: this process only (Django's side, not PostgreSQL's); steadier than wall time on
        # a loaded machine.
        print(
            f"{'path':<10} {'queries':>8} {'median ms':>10} {'min ms':>8} {'CPU ms':>8}"
            f" {'new connection ms':>18}"
        )
        for name in ("bare", "store", "product", "buy", "callback", "order"):
            queries, times, cpu, fresh = paths.measure(name, args.repeat)
            print(
                f"{name:<10} {len(queries):>8} {statistics.median(times):>10.1f}"
                f" {min(times):>8.1f} {statistics.median(cpu):>8.1f}"
                f" {statistics.median(fresh):>18.1f}"
            )
            if name == args.sql:
                print("\n".join(f"    {query[:160]}" for query in queries))
        if args.cprofile:
            profiler = cProfile.Profile()
            for _ in range(args.repeat):
                step = paths.prepare(args.cprofile)
                profiler.enable()
                step()
                profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(20)
            print(out.getvalue())
    return 0


class Paths:
    """Each path as a zero-argument request; the buy and callback get fresh state each time."""

    def __init__(self, world: Any, shown: Any, stock: Any, product_path: Callable) -> None:
        from django.test import Client

        self.client = Client()
        self.world = world
        self.shown = shown
        self.stock = stock
        self.product_path = product_path
        self.buyer = 0
        self.last_payment: tuple[str, str] | None = None
        self.last_order = ""

    def prepare(self, name: str) -> Callable[[], Any]:
        client = self.client
        if name == "bare":
            return lambda: client.get(f"/bench/bare/{self.world.store.slug}/")
        if name == "store":
            return lambda: client.get(f"/s/{self.world.store.slug}/")
        if name == "product":
            return lambda: client.get(self.product_path(self.shown))
        if name == "buy":
            return self._buy
        if name == "callback":
            self._buy()
            return self._callback
        if name == "order":
            if not self.last_order:
                self._buy()
                self._callback()
            return lambda: client.get(self.last_order)
        raise ValueError(name)

    def _buy(self) -> Any:
        from urllib.parse import unquote

        self.buyer += 1
        client = self.client
        client.cookies["cv_fp"] = secrets.token_urlsafe(24)
        response = client.post(
            self.product_path(self.stock),
            {
                "option": self.stock.pk,
                "quantity": 1,
                "email": f"profile{self.buyer}@example.com",
                "gateway": "sandbox",
            },
            headers={"X-Forwarded-For": f"10.9.{self.buyer >> 8 & 255}.{self.buyer & 255}"},
        )
        assert response.status_code == 302, response.status_code
        location = response["Location"]
        reference = location.split("/pay/sandbox/")[1].split("/")[0]
        self.last_payment = (reference, f"{self.stock.price:.2f}")
        self.last_order = unquote(location.split("next=")[1])
        return response

    def _callback(self) -> Any:
        from orders.gateways.sandbox import SIGNATURE_HEADER, SandboxGateway

        assert self.last_payment is not None
        reference, amount = self.last_payment
        trade = f"T{reference}"
        body = json.dumps(
            {
                "event_id": f"{trade}:paid",
                "payment_reference": reference,
                "status": "paid",
                "amount": amount,
                "currency": self.stock.currency,
                "trade_id": trade,
            }
        ).encode()
        signature = SandboxGateway().sign(body, timestamp=int(time.time()))
        response = self.client.post(
            "/pay/callback/sandbox/",
            data=body,
            content_type="application/json",
            headers={SIGNATURE_HEADER: signature},
        )
        assert response.status_code == 200, response.content
        return response

    def measure(
        self, name: str, repeat: int
    ) -> tuple[list[str], list[float], list[float], list[float]]:
        from django.db import connection

        # Counted by an execute wrapper: request_started clears Django's own query log.
        executed: list[str] = []

        def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            executed.append(sql)
            return execute(sql, params, many, context)

        times = []
        cpu = []
        fresh = []
        for _ in range(repeat):
            step = self.prepare(name)
            started, started_cpu = time.perf_counter(), time.process_time()
            step()
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            # The same request on a new connection, as each request gets with CONN_MAX_AGE=0
            # (the test client keeps its connection across requests; gunicorn would not).
            step = self.prepare(name)
            connection.close()
            started = time.perf_counter()
            step()
            fresh.append((time.perf_counter() - started) * 1000)
        step = self.prepare(name)
        with connection.execute_wrapper(count):  # counted once warm, timed without counting
            step()
        return executed, times, cpu, fresh


if __name__ == "__main__":
    sys.exit(main())
