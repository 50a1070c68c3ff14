"""An https webhook delivered to the address the SSRF check approved still speaks TLS to the
merchant's host name: SNI carries the name and the certificate is verified against it."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.factories import ProductFactory, add_keys
from tests.webhooks.conftest import buy
from webhooks import services, transport
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificates(tmp_path: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host`` signed by it (PEM files)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test CA"))
        .issuer_name(_name("Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


class TLSReceiver:
    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.server_names: list[str | None] = []
        self.hosts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.hosts.append(self.headers.get("Host") or "")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                return

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        def remember(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
            receiver.server_names.append(server_name)

        context.sni_callback = remember  # type: ignore[assignment]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def tls(tmp_path, monkeypatch) -> Iterator[tuple[TLSReceiver, Path]]:
    ca_file, cert_file, key_file = _certificates(tmp_path, "hooks.example.test")
    receiver = TLSReceiver(cert_file, key_file)
    receiver.thread.start()
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host in ("hooks.example.test", "other.example.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", receiver.port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(
        transport, "ssl_context", lambda: ssl.create_default_context(cafile=str(ca_file))
    )
    yield receiver, ca_file
    receiver.server.shutdown()
    receiver.server.server_close()


def test_https_goes_to_the_checked_address_with_the_host_name_for_sni_and_verification(
    merchant, tls, django_capture_on_commit_callbacks
):
    receiver, _ca = tls
    services.create_endpoint(
        merchant=merchant,
        url=f"https://hooks.example.test:{receiver.port}/hook",
        events=["order.paid"],
    )
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.response_excerpt) == (
        "succeeded",
        200,
        "ok",
    )
    assert receiver.server_names == ["hooks.example.test"]
    assert receiver.hosts == [f"hooks.example.test:{receiver.port}"]


def test_a_certificate_for_another_name_is_refused(
    merchant, tls, django_capture_on_commit_callbacks
):
    receiver, _ca = tls
    services.create_endpoint(
        merchant=merchant,
        url=f"https://other.example.test:{receiver.port}/hook",
        events=["order.paid"],
    )
    product = ProductFactory(merchant=merchant)
    add_keys(product, 1)
    buy(product, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.last_error) == (
        "pending",
        None,
        "ConnectError",
    )
    assert receiver.hosts == []
