"""Real Celery workers, killed with SIGKILL mid-task: before their transaction commits and after.
At-least-once delivery (acks_late, reject_on_worker_lost, a short visibility timeout here) hands
the message to the next worker; idempotent tasks make that one delivery and at most one email."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from orders import tasks
from orders.models import Delivery, Order
from shop.models import CardKey
from tests.conftest import assert_real_postgres_transactions, open_payment, place
from tests.factories import ProductFactory, add_keys
from tests.test_helpers_payments import pay

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_TIMEOUT = 2


def wait_for(condition: Callable[[], bool], timeout: float = 45, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own, so no other run's worker takes its messages."""
    name = f"crash-test-{uuid.uuid4().hex[:8]}"
    yield name
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(name)


@contextmanager
def worker(queue: str, email_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": (
            f"postgres://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
            f"{connection.settings_dict['PORT']}/{connection.settings_dict['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "TEST_CELERY_EAGER": "false",
        "CELERY_QUEUE": queue,
        "CELERY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
        "TEST_EMAIL_URL": email_url,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def publish(task, queue: str, **kwargs) -> None:
    celery_app.conf.task_always_eager = False
    try:
        task.apply_async(kwargs=kwargs, queue=queue)
    finally:
        celery_app.conf.task_always_eager = True


def mails_about(directory: Path, order: Order) -> int:
    return sum(order.number in f.read_text() for f in directory.glob("*") if f.is_file())


def unfulfilled_paid_order() -> Order:
    """Paid while its only key went to another buyer: waits for a restock."""
    product = ProductFactory()
    add_keys(product, 1)
    order = place(product).order
    payment = open_payment(order)
    CardKey.objects.filter(order=order).update(reserved_until=timezone.now() - timedelta(minutes=1))
    place(product)
    pay(payment)
    order.refresh_from_db()
    assert order.status == Order.Status.UNFULFILLED
    return order


def test_worker_killed_before_commit(queue, tmp_path):
    assert_real_postgres_transactions()
    order = unfulfilled_paid_order()
    add_keys(order.product, 1, prefix="RESTOCK")
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(minutes=5))
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()

    # Hold the order's row lock so the repair task blocks inside its transaction.
    blocker = psycopg.connect(
        host=connection.settings_dict["HOST"],
        port=connection.settings_dict["PORT"],
        user=connection.settings_dict["USER"],
        dbname=connection.settings_dict["NAME"],
    )
    blocker.execute("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", [order.pk])
    publish(tasks.repair_paid_orders_task, queue)

    def worker_waits_on_the_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event_type = 'Lock'",
                [connection.settings_dict["NAME"]],
            )
            return cursor.fetchone()[0] > 0

    with worker(queue, f"filemail:///{mail_dir}", tmp_path / "worker1.log") as first:
        wait_for(worker_waits_on_the_lock, what="the worker to block in its transaction")
        kill(first)
    blocker.rollback()
    blocker.close()
    order.refresh_from_db()
    assert order.status == Order.Status.UNFULFILLED, "the killed transaction committed"

    time.sleep(VISIBILITY_TIMEOUT + 1)
    with worker(queue, f"filemail:///{mail_dir}", tmp_path / "worker2.log"):
        wait_for(
            lambda: Order.objects.get(pk=order.pk).status == Order.Status.DELIVERED,
            what="the redelivered task to deliver",
        )
        wait_for(lambda: mails_about(mail_dir, order) >= 1, what="the receipt")
        time.sleep(1)  # room for a duplicate to show up

    assert Delivery.objects.filter(order=order).count() == 1
    assert mails_about(mail_dir, order) == 1


class HangingSMTPServer:
    """Greets, then never answers: a send that hangs until the worker is killed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.connected = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _serve(self) -> None:
        try:
            while True:
                conn, _addr = self.sock.accept()
                self.conns.append(conn)
                conn.sendall(b"220 stub ESMTP\r\n")
                self.connected.set()
        except OSError:
            return

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_worker_killed_after_commit(queue, tmp_path):
    assert_real_postgres_transactions()
    product = ProductFactory()
    add_keys(product, 1)
    order = place(product).order
    pay(open_payment(order))
    # As if the receipt had not gone out yet: the task is about to be sent.
    Order.objects.filter(pk=order.pk).update(
        receipt_sent_at=None, receipt_claimed_at=None, delivered_at=timezone.now()
    )
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    smtp = HangingSMTPServer()
    publish(tasks.send_order_receipt_task, queue, order_id=order.pk)

    try:
        with worker(queue, f"smtp://127.0.0.1:{smtp.port}", tmp_path / "worker1.log") as first:
            # The lease is committed, then the send hangs: kill it there.
            wait_for(
                lambda: Order.objects.get(pk=order.pk).receipt_claimed_at is not None,
                what="the receipt lease",
            )
            assert smtp.connected.wait(timeout=30)
            kill(first)
    finally:
        smtp.close()

    time.sleep(VISIBILITY_TIMEOUT + 1)
    with worker(queue, f"filemail:///{mail_dir}", tmp_path / "worker2.log"):
        # The redelivered task finds a fresh lease: it sends nothing (never a second email).
        time.sleep(4)
        assert mails_about(mail_dir, order) == 0
        # The lease goes stale; the repair job sends the receipt, once.
        Order.objects.filter(pk=order.pk).update(
            receipt_claimed_at=timezone.now() - timedelta(hours=1),
            delivered_at=timezone.now() - timedelta(minutes=15),
        )
        publish(tasks.repair_paid_orders_task, queue)
        wait_for(lambda: mails_about(mail_dir, order) >= 1, what="the receipt")
        publish(tasks.repair_paid_orders_task, queue)
        time.sleep(2)

    assert mails_about(mail_dir, order) == 1
    assert Delivery.objects.filter(order=order).count() == 1
    assert Order.objects.get(pk=order.pk).receipt_sent_at is not None
