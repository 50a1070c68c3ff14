"""``make bench``: Cardvault's hot paths on PostgreSQL, each against a floor measured in the same
run on the same machine. Every figure is the median of several runs with min and max; the ratio
to the floor, not the absolute number, is what to compare across machines.

1. Buy → key at 1/4/16/64 concurrent buyers: the product page's Buy form and the signed sandbox
   callback through gunicorn; floor: an order insert plus the raw ``SKIP LOCKED`` claim in psycopg
   at the same concurrency. Afterwards no key may have been sold twice.
2. Store and product pages (requests/s) against a bare Django view (one indexed query, one small
   template) served by the same gunicorn.
3. Importing keys through ``import_keys`` against encrypt + fingerprint + one COPY.
4. Drop: 200 buyers for 50 keys.
5. Aging: buy → key after 100,000 keys of one product were sold, against a fresh product in the
   same table, and the claim's plan.

It creates its own database (``cardvault_bench_<pid>``) and gunicorn on a free port of 127.0.0.1,
and removes both at the end, on failure too. ``--quick`` runs a few seconds per figure (for
development); ``--json PATH`` writes the figures as JSON as well.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import BuyJob, ClaimJob, LoadPool, Sample
from bench.harness import (
    Gunicorn,
    Spread,
    create_database,
    drop_database,
    load_average,
    machine,
    page_load,
    page_load_tool,
    percentile,
    server_version,
)

FLOOR_MAX_CONNECTIONS = 64  # PostgreSQL allows 100 here, shared with everything else


@dataclass(frozen=True)
class Scale:
    runs: int
    levels: tuple[int, ...]
    per_client: dict[int, int]
    floor_factor: int  # the floor is ~100× faster: give it more work for a stable timing
    page_seconds: int
    page_connections: int
    import_keys: int
    import_runs: int
    drop_runs: int
    autovacuum_wait: int
    drop_buyers: int = 200
    drop_keys: int = 50


FULL = Scale(
    runs=3,
    levels=(1, 4, 16, 64),
    # At least 100 callbacks per run and level: a p99 of fewer samples is their maximum.
    per_client={1: 100, 4: 25, 16: 25, 64: 2},
    floor_factor=10,
    page_seconds=5,
    page_connections=16,
    import_keys=100_000,
    import_runs=3,
    drop_runs=3,
    autovacuum_wait=90,
)
# Every figure at full size (all four concurrency levels, 100,000 keys imported and aged), but
# one or two runs each, short page loads, and VACUUM by hand instead of waiting for autovacuum.
QUICK = Scale(
    runs=2,
    levels=(1, 4, 16, 64),
    per_client={1: 10, 4: 5, 16: 3, 64: 1},
    floor_factor=10,
    page_seconds=2,
    page_connections=16,
    import_keys=100_000,
    import_runs=1,
    drop_runs=1,
    autovacuum_wait=0,
)


# --- report ---------------------------------------------------------------------------------
@dataclass
class Report:
    machine: dict[str, str]
    setup: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    load: list[str] = field(default_factory=list)

    def phase(self, name: str) -> None:
        now = time.strftime("%H:%M:%S UTC", time.gmtime())  # Django set TZ to TIME_ZONE
        line = f"{name}: load average {load_average()} at {now}"
        self.load.append(line)
        print(f"\n== {line}", flush=True)


def say(text: str) -> None:
    print(text, flush=True)


def spread(values: list[float]) -> dict[str, float]:
    s = Spread.of(values)
    return {"median": s.median, "min": s.low, "max": s.high}


def fmt(values: list[float], digits: int = 1, unit: str = "") -> str:
    return Spread.of(values).fmt(digits, unit)


# --- the benchmark's data -------------------------------------------------------------------
class World:
    """Merchants, products and stock the benchmark creates through the app's own services."""

    def __init__(self) -> None:
        from tests.factories import MerchantFactory

        self.store: Any = MerchantFactory(slug="bench-store", name="Bench Store")
        self.buy: Any = MerchantFactory(slug="bench-buy", name="Bench Buy")
        self.imports: Any = MerchantFactory(slug="bench-import", name="Bench Import")
        self._serial = 0

    def product(self, merchant: Any, keys: int, *, prefix: str, **fields: Any) -> Any:
        from shop import services
        from shop.models import ImportBatch
        from tests.factories import ProductFactory

        self._serial += 1
        product: Any = ProductFactory(
            merchant=merchant, slug=f"{prefix.lower()}-{self._serial}", **fields
        )
        product.bench_key_prefix = f"{prefix}-{self._serial}-"
        if keys:
            services.import_keys(
                product=product,
                lines=[
                    f"{product.bench_key_prefix}{i:06d}-{os.urandom(4).hex()}" for i in range(keys)
                ],
                source=ImportBatch.Source.COMMAND,
            )
        return product

    def storefront(self) -> Any:
        """A realistic store: 3 categories of 6 products, two of them with two variants each,
        20 keys per product. Returns the product whose page is measured."""
        from tests.factories import CategoryFactory

        measured = None
        for c in range(3):
            category = CategoryFactory(merchant=self.store, name=f"Category {c}")
            for p in range(6):
                product = self.product(
                    self.store,
                    20,
                    prefix="STORE",
                    category=category,
                    description="A game key.\nRedeem it in the launcher.",
                )
                if p < 2 and c == 0:
                    for v in range(2):
                        self.product(
                            self.store,
                            20,
                            prefix="STORE",
                            category=category,
                            variant_of=product,
                            variant_label=f"Edition {v}",
                        )
                measured = measured or product
        return measured


def product_path(product: Any) -> str:
    return f"/s/{product.merchant.slug}/p/{product.slug}/"


# --- the raw SQL floor ----------------------------------------------------------------------
FLOOR_TABLES = """
CREATE TABLE bench_floor_key (
    id bigserial PRIMARY KEY, product_id bigint NOT NULL, status varchar(16) NOT NULL,
    order_id bigint, sold_at timestamptz, ciphertext bytea NOT NULL);
CREATE INDEX bench_floor_free ON bench_floor_key (product_id, id)
    WHERE status IN ('available', 'reserved');
CREATE TABLE bench_floor_order (
    id bigserial PRIMARY KEY, product_id bigint NOT NULL, email varchar(254) NOT NULL,
    amount numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bench_floor_import (
    merchant_id bigint NOT NULL, product_id bigint NOT NULL, key_id varchar(32) NOT NULL,
    nonce bytea NOT NULL, ciphertext bytea NOT NULL, fingerprint varchar(64) NOT NULL);
"""


class Floor:
    def __init__(self, dsn: str) -> None:
        from django.db import connection

        self.dsn = dsn
        self._product = 0
        with connection.cursor() as cursor:
            cursor.execute(FLOOR_TABLES)

    def stock(self, keys: int) -> int:
        from django.db import connection

        self._product += 1
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_floor_key (product_id, status, ciphertext)"
                " SELECT %s, 'available', decode(md5(g::text) || md5(g::text), 'hex')"
                " FROM generate_series(1, %s) g",
                [self._product, keys],
            )
            cursor.execute("ANALYZE bench_floor_key")
        return self._product


# --- measuring ------------------------------------------------------------------------------
@dataclass
class Run:
    done: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    outcomes: dict[str, int]
    last_done_s: float = 0.0
    sample_path: str = ""


def summarise(released: float, samples: list[Sample], done: str) -> Run:
    finished = [s for s in samples if s[0] == done]
    ends = [s[3] for s in samples] or [released]
    seconds = max(ends) - released
    last_done = max((s[3] for s in finished), default=released) - released
    latencies = [(s[3] - s[2]) * 1000 for s in finished]
    return Run(
        done=len(finished),
        seconds=seconds,
        rate=len(finished) / last_done if last_done > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        outcomes=dict(Counter(s[0] for s in samples)),
        last_done_s=last_done,
        sample_path=next((s[4] for s in finished if s[4]), ""),
    )


class Bench:
    def __init__(
        self,
        scale: Scale,
        report: Report,
        pool: LoadPool,
        server: Gunicorn,
        deadline: float,
        callbacks: Gunicorn | None = None,
    ) -> None:
        from django.utils.html import escape

        from orders.exceptions import OutOfStock

        self.scale = scale
        self.report = report
        self.pool = pool
        self.server = server
        self.callbacks = callbacks  # the payment callbacks' own pool, as in production
        self.world = World()
        self.sold_out_text = escape(str(OutOfStock.user_message))
        self.bought: list[Any] = []  # products sold through HTTP, checked at the end
        self.buyers = 1  # buyers so far: each gets its own address, mailbox and browser
        self.deadline = deadline

    def more_runs(self, done: int) -> bool:
        """Another run, unless the time bound is spent (never fewer than one run)."""
        if done and time.monotonic() > self.deadline:
            self.report.checks.setdefault("cut_short", []).append(f"after {done} runs")
            say(f"  time bound reached: {done} runs")
            return False
        return True

    # --- buy → key ------------------------------------------------------------------------
    def buy(self, product: Any, clients: int, per_client: int, max_seconds: float = 120) -> Run:
        job = BuyJob(
            base_url=self.server.base_url,
            product_path=product_path(product),
            option=product.pk,
            amount=f"{product.price:.2f}",
            currency=product.currency,
            clients=clients,
            per_client=per_client,
            max_seconds=max_seconds,
            sold_out_text=self.sold_out_text,
            first_buyer=self.buyers,
            callback_url=self.callbacks.base_url if self.callbacks else "",
        )
        self.buyers += clients * per_client
        released, samples = self.pool.run(job)
        self.bought.append(product)
        return summarise(released, samples, "paid")

    def claim_floor(
        self, floor: Floor, keys: int, clients: int, per_client: int, max_seconds: float = 60
    ) -> Run:
        job = ClaimJob(
            dsn=floor.dsn,
            product_id=floor.stock(keys),
            clients=clients,
            per_client=per_client,
            max_seconds=max_seconds,
        )
        released, samples = self.pool.run(job)
        return summarise(released, samples, "claimed")

    def check_delivered(self, product: Any, run: Run) -> None:
        """The callbacks the clients saw accepted are orders delivered in the database, and the
        order page shows the key."""
        import httpx

        from orders.models import Order

        delivered = Order.objects.filter(product=product, status=Order.Status.DELIVERED).count()
        if delivered != run.done:
            raise AssertionError(f"{product.slug}: {run.done} paid, {delivered} delivered")
        if run.sample_path:
            page = httpx.get(self.server.base_url + run.sample_path, timeout=30)
            prefix = getattr(product, "bench_key_prefix", "")
            if page.status_code != 200 or prefix not in page.text:
                raise AssertionError(f"order page {page.status_code} shows no {prefix} key")

    def buy_to_key(self, floor: Floor) -> None:
        scale = self.scale
        self.report.phase("buy → key")
        ours: dict[int, list[Run]] = {c: [] for c in scale.levels}
        floors: dict[int, list[Run]] = {c: [] for c in scale.levels}
        # Not measured: each pool's workers import the views and open their database
        # connections on their first requests, which would otherwise land in the first run's p99.
        warm = self.world.product(self.world.buy, 4 * 4 + 5, prefix="WARM")
        self.check_delivered(warm, self.buy(warm, 4, 4))
        for run in range(scale.runs):
            if not self.more_runs(run):
                break
            for clients in scale.levels:
                per = scale.per_client[clients]
                fl = self.claim_floor(
                    floor,
                    clients * per * scale.floor_factor + 10,
                    min(clients, FLOOR_MAX_CONNECTIONS),
                    per * scale.floor_factor,
                )
                product = self.world.product(self.world.buy, clients * per + 5, prefix="BUY")
                us = self.buy(product, clients, per)
                self.check_delivered(product, us)
                floors[clients].append(fl)
                ours[clients].append(us)
                say(
                    f"  run {run + 1} · {clients:>2} buyers: {us.rate:7.1f} delivered/s"
                    f" (p50 {us.p50_ms:.0f} ms, p99 {us.p99_ms:.0f} ms, {us.outcomes})"
                    f" · floor {fl.rate:7.0f}/s (p99 {fl.p99_ms:.1f} ms) · ratio"
                    f" {us.rate / fl.rate:.1%}"
                )
        figures = {}
        for clients in scale.levels:
            mine, base = ours[clients], floors[clients]
            figures[str(clients)] = {
                "delivered_per_s": spread([r.rate for r in mine]),
                "callback_p50_ms": spread([r.p50_ms for r in mine]),
                "callback_p99_ms": spread([r.p99_ms for r in mine]),
                "floor_per_s": spread([r.rate for r in base]),
                "floor_p99_ms": spread([r.p99_ms for r in base]),
                "ratio": spread([a.rate / b.rate for a, b in zip(mine, base, strict=True)]),
                "orders": sum(r.done for r in mine),
                "not_delivered": sum(sum(r.outcomes.values()) - r.done for r in mine),
            }
        self.report.figures["buy_to_key"] = figures

    # --- storefront -----------------------------------------------------------------------
    def storefront(self, product: Any) -> None:
        scale = self.scale
        self.report.phase("storefront pages")
        base = self.server.base_url
        urls = {
            "bare": f"{base}/bench/bare/{self.world.store.slug}/",
            "store": f"{base}/s/{self.world.store.slug}/",
            "product": base + product_path(product),
        }
        for url in urls.values():  # compile templates, open connections: not measured
            page_load(url, connections=4, seconds=1)
        results: dict[str, list[Any]] = {name: [] for name in urls}
        for run in range(scale.runs):
            if not self.more_runs(run):
                break
            for name, url in urls.items():
                load = page_load(
                    url, connections=scale.page_connections, seconds=scale.page_seconds
                )
                if load.errors:
                    raise AssertionError(f"{name}: {load.errors} failed requests")
                results[name].append(load)
            say(
                f"  run {run + 1}: "
                + ", ".join(f"{n} {results[n][-1].requests_per_second:.0f} req/s" for n in urls)
            )
        figures: dict[str, Any] = {"tool": page_load_tool(), "connections": scale.page_connections}
        for name in urls:
            figures[name] = {
                "requests_per_s": spread([r.requests_per_second for r in results[name]]),
                "p50_ms": spread([r.p50_ms for r in results[name]]),
                "p99_ms": spread([r.p99_ms for r in results[name]]),
            }
            if name != "bare":
                figures[name]["ratio"] = spread(
                    [
                        a.requests_per_second / b.requests_per_second
                        for a, b in zip(results[name], results["bare"], strict=True)
                    ]
                )
        self.report.figures["storefront"] = figures

    # --- import ---------------------------------------------------------------------------
    def key_import(self) -> Any:
        from django.db import connection, transaction

        from shop import services, vault
        from shop.models import ImportBatch
        from tests.factories import ProductFactory

        scale = self.scale
        self.report.phase(f"import {scale.import_keys:,} keys")
        ours: list[float] = []
        floors: list[float] = []
        first = None
        for run in range(scale.import_runs):
            if not self.more_runs(run):
                break
            product: Any = ProductFactory(merchant=self.world.imports, slug=f"import-{run}")
            first = first or product
            lines = [
                f"IMPORT-{run}-{i:07d}-{os.urandom(6).hex()}" for i in range(scale.import_keys)
            ]
            floor_lines = [
                f"FLOOR-{run}-{i:07d}-{os.urandom(6).hex()}" for i in range(scale.import_keys)
            ]
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE bench_floor_import")

            started = time.perf_counter()
            ring = vault.keyring()
            merchant_id, product_id = self.world.imports.pk, product.pk
            with transaction.atomic(), connection.cursor() as cursor:
                copy_sql = (
                    "COPY bench_floor_import"
                    " (merchant_id, product_id, key_id, nonce, ciphertext, fingerprint) FROM STDIN"
                )
                with cursor.cursor.copy(copy_sql) as copy:
                    for text in floor_lines:
                        print_ = vault.fingerprint(text, merchant_id=merchant_id, ring=ring)
                        sealed = vault.seal(
                            text,
                            merchant_id=merchant_id,
                            product_id=product_id,
                            fingerprint=print_,
                            ring=ring,
                        )
                        copy.write_row(
                            (
                                merchant_id,
                                product_id,
                                sealed.key_id,
                                sealed.nonce,
                                sealed.ciphertext,
                                print_,
                            )
                        )
            floors.append(time.perf_counter() - started)

            started = time.perf_counter()
            result = services.import_keys(
                product=product, lines=lines, source=ImportBatch.Source.COMMAND
            )
            ours.append(time.perf_counter() - started)
            if result.imported != scale.import_keys:
                raise AssertionError(f"imported {result.imported} of {scale.import_keys}")
            say(
                f"  run {run + 1}: import_keys {ours[-1]:.2f} s · floor {floors[-1]:.2f} s"
                f" · ×{ours[-1] / floors[-1]:.2f}"
            )
        self.report.figures["import"] = {
            "keys": scale.import_keys,
            "seconds": spread(ours),
            "floor_seconds": spread(floors),
            "ratio": spread([a / b for a, b in zip(ours, floors, strict=True)]),
        }
        return first

    # --- drop -----------------------------------------------------------------------------
    def drop(self, floor: Floor) -> None:
        scale = self.scale
        self.report.phase(f"drop: {scale.drop_buyers} buyers for {scale.drop_keys} keys")
        runs: list[Run] = []
        floors: list[Run] = []
        for run in range(scale.drop_runs):
            if not self.more_runs(run):
                break
            connections = min(scale.drop_buyers, FLOOR_MAX_CONNECTIONS)
            fl = self.claim_floor(
                floor, scale.drop_keys, connections, math.ceil(scale.drop_buyers / connections)
            )
            product = self.world.product(
                self.world.buy, scale.drop_keys, prefix="DROP", max_quantity=1
            )
            us = self.buy(product, scale.drop_buyers, 1, max_seconds=120)
            say(f"  run {run + 1}: {us.outcomes}")
            self.check_delivered(product, us)
            sold_out = us.outcomes.get("sold_out", 0)
            if us.done != scale.drop_keys or sold_out != scale.drop_buyers - scale.drop_keys:
                raise AssertionError(f"drop: {us.outcomes}")
            runs.append(us)
            floors.append(fl)
            say(
                f"  run {run + 1}: last key delivered after {us.last_done_s:.2f} s,"
                f" every buyer answered after {us.seconds:.2f} s · floor: last of"
                f" {fl.done} keys claimed after {fl.last_done_s * 1000:.0f} ms"
            )
        self.report.figures["drop"] = {
            "buyers": scale.drop_buyers,
            "keys": scale.drop_keys,
            "delivered": [r.done for r in runs],
            "sold_out_told": [r.outcomes.get("sold_out", 0) for r in runs],
            "last_key_delivered_s": spread([r.last_done_s for r in runs]),
            "all_answered_s": spread([r.seconds for r in runs]),
            "callback_p99_ms": spread([r.p99_ms for r in runs]),
            "floor_last_claim_s": spread([r.last_done_s for r in floors]),
            "ratio": spread(
                [a.last_done_s / b.last_done_s for a, b in zip(runs, floors, strict=True)]
            ),
        }

    # --- aging ----------------------------------------------------------------------------
    def aging(self, aged: Any) -> None:
        """Sell every key of ``aged`` (the first import's product) the way sales leave the table:
        each row leaves the free-stock index, then autovacuum (per-table settings) cleans up."""
        from django.db import connection

        from shop import services
        from shop.models import ImportBatch
        from tests.conftest import open_payment, place
        from tests.test_helpers_payments import pay

        scale = self.scale
        self.report.phase(f"aging: the {scale.import_keys:,} imported keys of one product sold")
        seed = place(aged).order
        pay(open_payment(seed))
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE shop_cardkey SET status = 'sold', order_id = %s, sold_at = now(),"
                " reserved_until = NULL WHERE product_id = %s AND status = 'available'",
                [seed.pk, aged.pk],
            )
            cursor.execute(
                "SELECT count(*) FROM shop_cardkey WHERE product_id = %s AND status = 'sold'",
                [aged.pk],
            )
            sold = cursor.fetchone()[0]
        per = scale.per_client.get(16, 3)
        services.import_keys(
            product=aged,
            lines=[
                f"AGED-{i:06d}-{os.urandom(4).hex()}"
                for i in range((scale.runs + 1) * 16 * per + 10)
            ],
            source=ImportBatch.Source.COMMAND,
        )
        aged.bench_key_prefix = "AGED-"
        checks: dict[str, Any] = {
            "plan_before_vacuum": claim_plan(aged),
            # What the plain form of the claim (product_id = %s ORDER BY id) would get here.
            "plain_plan_before_vacuum": plain_claim_plan(aged),
        }
        # The worst moment: 100,000 dead index entries, before any vacuum has run.
        unvacuumed = self.buy(aged, 16, per)
        say(
            f"  before vacuum: aged {unvacuumed.rate:.1f}/s (p99 {unvacuumed.p99_ms:.0f} ms,"
            f" {unvacuumed.outcomes})"
        )
        checks["vacuum"] = wait_for_autovacuum(scale.autovacuum_wait)
        checks["plan"] = claim_plan(aged)
        checks["plan_analyze"] = claim_plan(aged, analyze=True)
        checks["plain_plan"] = plain_claim_plan(aged)
        for key in ("plan_before_vacuum", "plan", "plan_analyze"):
            plan = checks[key]
            if "cardkey_free_stock" not in plan or "shop_cardkey_pkey" in plan:
                raise AssertionError(f"the claim does not use cardkey_free_stock:\n{plan}")
        checks["claim_uses_partial_index"] = True
        say("  claim plan: " + checks["plan"].replace("\n", "\n              "))
        for key in ("plain_plan_before_vacuum", "plain_plan"):
            say(f"  {key.replace('_', ' ')} would scan: {scans(checks[key])}")
        say("  " + checks["vacuum"])

        fresh_runs: list[Run] = []
        aged_runs: list[Run] = []
        for run in range(scale.runs):
            if not self.more_runs(run):
                break
            fresh = self.world.product(self.world.buy, 16 * per + 5, prefix="FRESH")
            fresh_runs.append(self.buy(fresh, 16, per))
            self.check_delivered(fresh, fresh_runs[-1])
            aged_runs.append(self.buy(aged, 16, per))
            say(
                f"  run {run + 1}: fresh {fresh_runs[-1].rate:.1f}/s"
                f" · aged {aged_runs[-1].rate:.1f}/s"
                f" (p99 {fresh_runs[-1].p99_ms:.0f} / {aged_runs[-1].p99_ms:.0f} ms)"
            )
        self.report.figures["aging"] = {
            "sold": sold,
            "fresh_per_s": spread([r.rate for r in fresh_runs]),
            "aged_per_s": spread([r.rate for r in aged_runs]),
            "aged_unvacuumed_per_s": unvacuumed.rate,
            "aged_unvacuumed_p99_ms": unvacuumed.p99_ms,
            "aged_p99_ms": spread([r.p99_ms for r in aged_runs]),
            "ratio": spread([a.rate / f.rate for a, f in zip(aged_runs, fresh_runs, strict=True)]),
        }
        self.report.checks.update(checks)

    # --- after everything -----------------------------------------------------------------
    def no_key_sold_twice(self) -> None:
        from django.db import connection
        from django.db.models import Count

        from orders.models import Delivery, Order
        from shop.models import CardKey

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM (SELECT card_key_id FROM orders_delivery"
                " WHERE card_key_id IS NOT NULL AND NOT shared GROUP BY card_key_id"
                " HAVING count(*) > 1) twice"
            )
            twice = cursor.fetchone()[0]
        mismatched = []
        for product in {p.pk: p for p in self.bought}.values():
            delivered = Order.objects.filter(product=product, status=Order.Status.DELIVERED)
            sold = CardKey.objects.filter(product=product, status=CardKey.Status.SOLD)
            deliveries = Delivery.objects.filter(order__product=product)
            counts = (delivered.count(), sold.exclude(deliveries=None).count(), deliveries.count())
            if len(set(counts)) != 1:
                mismatched.append((product.slug, counts))
        keys_per_order = (
            Delivery.objects.filter(order__product__in=self.bought)
            .values("order")
            .annotate(n=Count("id"))
            .exclude(n=1)
            .count()
        )
        self.report.checks["keys_sold_twice"] = twice
        self.report.checks["mismatched_products"] = mismatched
        if twice or mismatched or keys_per_order:
            raise AssertionError(f"sold twice: {twice}, mismatched: {mismatched}")
        say(f"\nno key sold twice: {Delivery.objects.count()} deliveries checked")


def claim_plan(product: Any, *, analyze: bool = False) -> str:
    """EXPLAIN of the very query ``lock_free_key_ids`` sends, in the planner settings it sends it
    with (its statements captured, then replayed with the claim explained, and rolled back)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from orders import lock_objects

    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            lock_objects.lock_free_key_ids(product_id=product.pk, count=1, now=timezone.now())
        options = "(ANALYZE, BUFFERS, COSTS OFF)" if analyze else "(COSTS OFF)"
        plan = ""
        with connection.cursor() as cursor:
            for query in captured.captured_queries:
                if "SKIP LOCKED" in query["sql"]:
                    cursor.execute(f"EXPLAIN {options} {query['sql']}")
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                else:
                    cursor.execute(query["sql"])
        transaction.set_rollback(True)
    if not plan:
        raise AssertionError(f"no claim among {captured.captured_queries}")
    return plan


def scans(plan: str) -> str:
    """The scan nodes of a plan, in one line: ``Index Scan using cardkey_free_stock``."""
    found = []
    for line in plan.splitlines():
        text = line.strip().removeprefix("->").strip()
        if "Scan" in text:
            found.append(text.split(" on ")[0] if " using " in text else text)
    return "; ".join(found) or "?"


def plain_claim_plan(product: Any) -> str:
    """EXPLAIN of the claim in its plain form (``product_id = %s ORDER BY id``), which is what
    ``lock_free_key_ids`` sent before issue 7; for comparison only."""
    from django.db import transaction
    from django.utils import timezone

    from orders.lock_objects import free_stock_q
    from shop.models import CardKey

    with transaction.atomic():
        plan = (
            CardKey.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(free_stock_q(timezone.now()), product_id=product.pk)
            .order_by("id")
            .values_list("id", flat=True)[:1]
            .explain(format="text", costs=False)
        )
        transaction.set_rollback(True)
    return str(plan)


def wait_for_autovacuum(seconds: int) -> str:
    """Give autovacuum (shop_cardkey's own thresholds, shop migration 0002) up to ``seconds`` to
    start on the table, and as long again to finish once it has started; if it has not cleaned
    the table by then, VACUUM ANALYZE by hand and say so."""
    from django.db import connection

    def state() -> tuple[Any, Any, int, bool]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT last_autovacuum, last_autoanalyze, n_dead_tup,"
                " EXISTS (SELECT 1 FROM pg_stat_progress_vacuum p"
                " WHERE p.relid = 'shop_cardkey'::regclass AND p.datname = current_database())"
                " FROM pg_stat_user_tables WHERE relname = 'shop_cardkey'"
            )
            row = cursor.fetchone()
        return row[0], row[1], row[2], bool(row[3])

    before, _analyzed, dead, _running = state()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('autovacuum') = 'on'")
        autovacuum_on = bool(cursor.fetchone()[0])
    if not autovacuum_on:
        # A server setting (postgresql.conf), not the benchmark's to change; production runs
        # with PostgreSQL's default, autovacuum = on.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) shop_cardkey")
        return (
            f"{dead:,} dead rows; autovacuum is off on this PostgreSQL server, so VACUUM ANALYZE"
            " by hand"
        )
    started = time.monotonic()
    seen_at: float | None = None
    while time.monotonic() - started < (seconds if seen_at is None else seen_at + seconds):
        vacuumed, analyzed, _dead, running = state()
        if running and seen_at is None:
            seen_at = time.monotonic() - started
        if vacuumed != before and analyzed is not None:
            return f"autovacuum cleaned {dead:,} dead rows after {time.monotonic() - started:.0f} s"
        time.sleep(2)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) shop_cardkey")
    if seen_at is not None:
        return (
            f"{dead:,} dead rows; autovacuum started after {seen_at:.0f} s but had not finished"
            f" {seconds} s later, so VACUUM ANALYZE by hand"
        )
    return (
        f"{dead:,} dead rows; autovacuum had not started after {seconds} s (it visits every"
        " database of the server in turn), so VACUUM ANALYZE by hand"
    )


# --- the whole run --------------------------------------------------------------------------
def print_summary(report: Report) -> None:
    f = report.figures
    say("\n" + "=" * 100)
    say(f"machine: {report.machine}")
    say(f"setup: {report.setup}")
    for line in report.load:
        say(f"  {line}")

    def s(d: dict[str, float], digits: int = 1, unit: str = "") -> str:
        return Spread(d["median"], d["min"], d["max"]).fmt(digits, unit)

    def pct(d: dict[str, float]) -> str:
        return Spread(d["median"] * 100, d["min"] * 100, d["max"] * 100).fmt(1, "%")

    if "buy_to_key" in f:
        say("\nBuy → key: orders delivered/s, callback→delivered p50/p99 ms; floor tx/s; ratio")
        for clients, row in f["buy_to_key"].items():
            say(
                f"  {clients:>3} buyers  {s(row['delivered_per_s'])}/s"
                f"  p50 {s(row['callback_p50_ms'], 0)}"
                f"  p99 {s(row['callback_p99_ms'], 0)}  | floor {s(row['floor_per_s'], 0)}/s"
                f"  | ratio {pct(row['ratio'])}"
            )
    if "storefront" in f:
        row = f["storefront"]
        say(f"\nStorefront ({row['tool']}, {row['connections']} connections): requests/s; ratio")
        for name in ("bare", "store", "product"):
            ratio = f"  | ratio {pct(row[name]['ratio'])}" if "ratio" in row[name] else "  (floor)"
            rps, p99 = s(row[name]["requests_per_s"], 0), s(row[name]["p99_ms"], 0)
            say(f"  {name:<8} {rps}  p99 {p99} ms{ratio}")
    if "import" in f:
        row = f["import"]
        say(
            f"\nImport {row['keys']:,} keys: import_keys {s(row['seconds'], 2, ' s')}"
            f" | floor {s(row['floor_seconds'], 2, ' s')} | ×{s(row['ratio'], 2)}"
        )
    if "drop" in f:
        row = f["drop"]
        say(
            f"\nDrop {row['buyers']} buyers / {row['keys']} keys: delivered {row['delivered']},"
            f" told sold out {row['sold_out_told']},"
            f" last key delivered after {s(row['last_key_delivered_s'], 2, ' s')},"
            f" all answered after {s(row['all_answered_s'], 2, ' s')}"
            f" | floor {s(row['floor_last_claim_s'], 3, ' s')} | ×{s(row['ratio'], 0)}"
        )
    if "aging" in f:
        row = f["aging"]
        say(
            f"\nAging ({row['sold']:,} sold): fresh {s(row['fresh_per_s'])}/s, aged"
            f" {s(row['aged_per_s'])}/s | aged/fresh {pct(row['ratio'])}; before vacuum"
            f" {row['aged_unvacuumed_per_s']:.1f}/s"
        )
    say(f"\nchecks: keys sold twice {report.checks.get('keys_sold_twice')}")
    say("\n" + targets_table(report))


def targets_table(report: Report) -> str:
    """The figures against the issue's targets (2 cores), as the Markdown table
    docs/performance.md shows: medians, with [min–max] over the runs."""
    f = report.figures
    rows: list[tuple[str, str, str, str, str, bool | None]] = []

    def s(d: dict[str, float], digits: int = 1, unit: str = "") -> str:
        return Spread(d["median"], d["min"], d["max"]).fmt(digits, unit)

    def pct(d: dict[str, float]) -> str:
        return Spread(d["median"] * 100, d["min"] * 100, d["max"] * 100).fmt(1, "%")

    if "buy_to_key" in f:
        for clients, row in f["buy_to_key"].items():
            target = "≥ 10%" if clients == "16" else "—"
            met = row["ratio"]["median"] >= 0.10 if clients == "16" else None
            rows.append(
                (
                    f"Buy → key, {clients} buyers (orders/s)",
                    s(row["delivered_per_s"]),
                    s(row["floor_per_s"], 0),
                    pct(row["ratio"]),
                    target,
                    met,
                )
            )
        if "16" in f["buy_to_key"]:
            row = f["buy_to_key"]["16"]
            rows.append(
                (
                    "Callback → delivered p99, 16 buyers (ms)",
                    s(row["callback_p99_ms"], 0),
                    s(row["floor_p99_ms"], 1),
                    "—",
                    "< 100 ms",
                    row["callback_p99_ms"]["median"] < 100,
                )
            )
    if "storefront" in f:
        row = f["storefront"]
        for name in ("store", "product"):
            rows.append(
                (
                    f"{name.capitalize()} page (requests/s)",
                    s(row[name]["requests_per_s"], 0),
                    s(row["bare"]["requests_per_s"], 0),
                    pct(row[name]["ratio"]),
                    "≥ 50%",
                    row[name]["ratio"]["median"] >= 0.5,
                )
            )
    if "import" in f:
        row = f["import"]
        rows.append(
            (
                f"Import {row['keys']:,} keys (s)",
                s(row["seconds"], 2),
                s(row["floor_seconds"], 2),
                "×" + s(row["ratio"], 2),
                "≤ ×2",
                row["ratio"]["median"] <= 2,
            )
        )
    if "drop" in f:
        row = f["drop"]
        ok = all(n == row["keys"] for n in row["delivered"]) and all(
            n == row["buyers"] - row["keys"] for n in row["sold_out_told"]
        )
        rows.append(
            (
                f"Drop {row['buyers']} buyers / {row['keys']} keys: last key delivered (s)",
                s(row["last_key_delivered_s"], 2),
                s(row["floor_last_claim_s"], 3),
                "×" + s(row["ratio"], 0),
                f"{row['keys']} delivered, {row['buyers'] - row['keys']} told sold out",
                ok,
            )
        )
    if "aging" in f:
        row = f["aging"]
        rows.append(
            (
                f"Aged buy → key, 16 buyers, {row['sold']:,} sold (orders/s)",
                s(row["aged_per_s"]),
                s(row["fresh_per_s"]) + " (fresh)",
                pct(row["ratio"]),
                "≥ 75%",
                row["ratio"]["median"] >= 0.75,
            )
        )
    if "plan" in report.checks:
        rows.append(
            (
                "Claim plan on the aged table (before and after vacuum)",
                scans(report.checks["plan"]),
                "—",
                "—",
                "cardkey_free_stock",
                bool(report.checks.get("claim_uses_partial_index")),
            )
        )
    twice = report.checks.get("keys_sold_twice")
    if twice is not None:
        rows.append(("Keys sold twice", str(twice), "—", "—", "0", twice == 0))
    lines = [
        "| Figure | Cardvault | Floor | Ratio | Target | Met? |",
        "|---|---|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} | {e} | {_met(ok)} |" for a, b, c, d, e, ok in rows),
    ]
    return "\n".join(lines)


def _met(ok: bool | None) -> str:
    return "—" if ok is None else "yes" if ok else "**no**"


@contextmanager
def bench_environment(run_id: str) -> Iterator[dict[str, str]]:
    """This run's database, created and migrated, and dropped afterwards whatever happens; its
    Redis keys (cache prefix and Celery queue) deleted afterwards."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    params = settings.DATABASES["default"]
    create_database(params)
    try:
        call_command("migrate", verbosity=0)
        yield params
    finally:
        connections.close_all()
        drop_database(params)
        _delete_redis_keys(run_id)


def _delete_redis_keys(run_id: str) -> None:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"*cardvault-bench-{run_id}*", count=1000))
    if keys:
        client.delete(*keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per figure")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only",
        default="storefront,buy,drop,import,aging",
        help="comma-separated subset (aging needs import)",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    scale = QUICK if args.quick else FULL

    run_id = str(os.getpid())
    os.environ["CARDVAULT_BENCH_RUN"] = run_id
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on a kill too
    import django

    django.setup()
    from psycopg.conninfo import make_conninfo

    workers = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))
    threads = int(os.environ.get("BENCH_GUNICORN_THREADS", "4"))
    # Production's shape (docker-compose.yml): payment callbacks have a pool of their own, and
    # the storefront pool a lower CPU weight (cpu_shares 256 of 1024 ≈ nice 6), so buyers
    # arriving hold up the keys of buyers who paid as little as the cores allow.
    # BENCH_CALLBACK_WORKERS=0: one pool for everything, as before. BENCH_CALLBACK_NICE < 0
    # (needs CAP_SYS_NICE) raises the callbacks' weight; -3 measured no better here.
    callback_workers = int(os.environ.get("BENCH_CALLBACK_WORKERS", "2"))
    callback_threads = int(os.environ.get("BENCH_CALLBACK_THREADS", "2"))
    storefront_nice = int(os.environ.get("BENCH_STOREFRONT_NICE", "6")) if callback_workers else 0
    callback_nice = int(os.environ.get("BENCH_CALLBACK_NICE", "0"))
    report = Report(machine=machine())
    say(f"machine: {report.machine}; load average {load_average()}")
    started = time.monotonic()
    with bench_environment(run_id) as params, tempfile.TemporaryDirectory() as tmp:
        report.setup = {
            "postgresql": server_version(params),
            "gunicorn": f"{workers} workers × {threads} threads",
            "callback pool": (
                f"{callback_workers} workers × {callback_threads} threads"
                if callback_workers
                else "none (callbacks served by the storefront pool)"
            ),
            "database": params["NAME"],
            "scale": "quick" if args.quick else "full",
        }
        dsn = make_conninfo(
            host=params.get("HOST") or "127.0.0.1",
            port=params.get("PORT") or 5432,
            user=params.get("USER") or "postgres",
            password=params.get("PASSWORD") or None,
            dbname=params["NAME"],
        )
        server = Gunicorn(
            env={**os.environ},
            workers=workers,
            threads=threads,
            log=Path(tmp) / "gunicorn.log",
            nice=storefront_nice,
        )
        callbacks = (
            Gunicorn(
                env={**os.environ},
                workers=callback_workers,
                threads=callback_threads,
                log=Path(tmp) / "callbacks.log",
                nice=callback_nice,
            )
            if callback_workers
            else None
        )
        pool: LoadPool | None = None
        try:
            server.start()
            if callbacks is not None:
                callbacks.start()
            if callbacks is not None:
                callbacks.set_priority()
                report.setup["callback priority"] = callbacks.niced or "default"
            pool = LoadPool(processes=os.cpu_count() or 2)
            # Past this, each remaining figure gets one run instead of several.
            budget = float(os.environ.get("BENCH_MAX_SECONDS", 300 if args.quick else 600))
            bench = Bench(
                scale, report, pool, server, deadline=started + budget, callbacks=callbacks
            )
            floor = Floor(dsn)
            steps: list[tuple[str, Callable[[], Any]]] = []
            if "storefront" in only:
                measured = bench.world.storefront()
                steps.append(("storefront", lambda: bench.storefront(measured)))
            if "buy" in only:
                steps.append(("buy", lambda: bench.buy_to_key(floor)))
            if "drop" in only:
                steps.append(("drop", lambda: bench.drop(floor)))
            imported: list[Any] = []
            if "import" in only:
                steps.append(("import", lambda: imported.append(bench.key_import())))
            if "aging" in only and "import" in only:
                steps.append(("aging", lambda: bench.aging(imported[0])))
            report.setup["storefront priority"] = "default"
            for name, step in steps:
                if name != "storefront" and storefront_nice and not server.niced:
                    # The storefront pool's lower weight is for when payment callbacks compete
                    # with it; the page figures have none, and there it would only hand CPU to
                    # the load generator (which production does not have) against the pool the
                    # floor is served by too. So it applies from the first buy on.
                    server.set_priority()
                    report.setup["storefront priority"] = f"{server.niced} from the {name} phase on"
                step()
            bench.no_key_sold_twice()
        except Exception:
            say(f"gunicorn log:\n{server.tail()}")
            if callbacks is not None:
                say(f"callback pool log:\n{callbacks.tail()}")
            raise
        finally:
            if pool is not None:
                pool.close()
            server.stop()
            if callbacks is not None:
                callbacks.stop()
    report.setup["seconds"] = round(time.monotonic() - started)
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
