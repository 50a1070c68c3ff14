"""Settings that must refuse to run, and the keyring check."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks

from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = base64.b64encode(b"\x03" * 32).decode()


def _import_production(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CARD_", "SECRET_KEY"))}
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            # A developer's demo .env must not fill in what the test leaves out.
            "CARDVAULT_ENV_FILE": "/nonexistent/.env",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


PRODUCTION_ENV = {
    "SECRET_KEY": "p" * 60,
    "CARD_KEYRING": f"prod1:{GOOD_KEY}",
    "CARD_FINGERPRINT_KEY": GOOD_KEY,
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cardvault",
}


def test_production_starts_with_its_secrets():
    result = _import_production(**PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CARD_KEYRING", "CARD_FINGERPRINT_KEY"])
def test_production_refuses_to_start_without_a_secret(missing, tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = _import_production(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    # A secret that is set never shows up in the error output.
    assert GOOD_KEY not in result.stderr


def test_production_refuses_a_short_secret_key():
    result = _import_production(**{**PRODUCTION_ENV, "SECRET_KEY": "short"})
    assert result.returncode != 0


@pytest.mark.parametrize(
    "keyring",
    ["", "nocolon", "k1:not-base64!!", "k1:" + base64.b64encode(b"short").decode(), "k1:A,k1:A"],
)
def test_keyring_check_reports_a_bad_keyring_without_printing_it(settings, keyring):
    settings.CARD_KEYRING = keyring
    errors = [e for e in checks.run_checks(tags=[checks.Tags.security]) if e.id == "cardvault.E001"]
    assert len(errors) == 1
    assert "CARD_KEYRING" in errors[0].msg


def test_keyring_check_passes_with_the_test_keyring():
    assert not [e for e in checks.run_checks() if e.id == "cardvault.E001"]


def test_celery_is_configured_for_at_least_once_work():
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert "expire-pending-orders" in conf.beat_schedule


def test_demo_env_writes_secrets_once(tmp_path, monkeypatch, capsys):
    from config import demo_env

    target = tmp_path / ".env"
    monkeypatch.setattr(demo_env, "ENV_PATH", target)
    demo_env.main()
    first = target.read_text()
    assert "CARD_KEYRING=" in first and "SECRET_KEY=" in first
    assert "Generated a development keyring" in capsys.readouterr().out
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    demo_env.main()
    assert target.read_text() == first
