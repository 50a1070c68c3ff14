"""Content-Security-Policy on every page, no inline script or style to need an exception, and
`manage.py check --deploy` clean under the production settings."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import verify_otp
from tests.factories import UserFactory
from tests.security.helpers import english_client
from tests.test_settings import GOOD_KEY

ROOT = Path(__file__).resolve().parent.parent.parent
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/(?:ld\+)?json)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)


def csp_of(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


@pytest.mark.django_db
def test_storefront_and_admin_send_a_strict_csp(stocked_product):
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    admin = english_client()
    admin.force_login(staff)
    verify_otp(admin, staff)
    for client, url in [
        (english_client(), "/"),
        (english_client(), f"/s/{stocked_product.merchant.slug}/p/{stocked_product.slug}/"),
        (english_client(), "/lookup/"),
        (admin, "/admin/"),
        (admin, "/admin/shop/product/add/"),
        (english_client(), "/merchant/login/"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = csp_of(response)
        assert policy["default-src"] == "'self'", url
        assert policy["script-src"] == "'self'", url
        assert policy["style-src"] == "'self'", url
        assert policy["frame-ancestors"] == "'none'", url
        assert policy["object-src"] == "'none'", url
        body = response.content.decode()
        assert not INLINE_SCRIPT.search(body), url
        assert not INLINE_HANDLER.search(body), url
        assert not INLINE_STYLE.search(body), url


def test_templates_and_scripts_have_no_inline_code():
    offenders = []
    for path in [*ROOT.glob("templates/**/*.html"), *ROOT.glob("*/templates/**/*.html")]:
        text = path.read_text()
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER, INLINE_STYLE):
            if pattern.search(text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern.pattern}")
    assert offenders == []


def test_check_deploy_is_clean_under_production_settings():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARD_", "SECRET_KEY"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "CARDVAULT_ENV_FILE": "/nonexistent/.env",
            # check --deploy wants a key that looks random (W009), unlike test_settings' "p"*60.
            "SECRET_KEY": "Zx9-" + "".join(chr(48 + (i * 7) % 75) for i in range(60)),
            "CARD_KEYRING": f"prod1:{GOOD_KEY}",
            "CARD_FINGERPRINT_KEY": GOOD_KEY,
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cardvault",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
