"""scripts/pip_audit_check.py: findings fail, an unreachable database is NOT AUDITED (loud, not
fatal), a full clean run passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from scripts.pip_audit_check import classify

ROOT = Path(__file__).resolve().parent.parent.parent


def report(*dependencies):
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


def test_a_finding_fails():
    outcome = classify(
        1,
        report(
            {
                "name": "django",
                "version": "5.2.0",
                "vulns": [{"id": "PYSEC-2025-1", "fix_versions": ["5.2.1"]}],
            },
            {"name": "segno", "version": "1.6.6", "vulns": []},
        ),
        "",
    )
    assert outcome.exit_code == 1
    assert "django 5.2.0: PYSEC-2025-1 (fixed in: 5.2.1)" in outcome.lines


def test_a_finding_wins_over_skipped_packages():
    outcome = classify(
        1,
        report(
            {"name": "a", "version": "1", "vulns": [{"id": "X-1", "fix_versions": []}]},
            {"name": "b", "skip_reason": "Dependency not found on PyPI"},
        ),
        "",
    )
    assert outcome.exit_code == 1


def test_skipped_packages_are_not_audited_and_not_fatal():
    outcome = classify(
        0,
        report(
            {
                "name": "amqp",
                "skip_reason": "Dependency not found on PyPI and could not be audited",
            },
            {"name": "cardvault", "skip_reason": "distribution marked as editable"},
        ),
        "No known vulnerabilities found",
    )
    assert outcome.exit_code == 0
    text = "\n".join(outcome.lines)
    assert "NOT AUDITED" in text
    assert "1 of 1 packages were not checked" in text
    assert "No known vulnerabilities" not in text


def test_a_network_crash_is_not_audited_but_another_crash_fails():
    offline = classify(1, "", "requests.exceptions.ConnectionError: Max retries exceeded")
    assert offline.exit_code == 0
    assert "NOT AUDITED" in "\n".join(offline.lines)
    broken = classify(1, "", "Traceback: KeyError 'x'")
    assert broken.exit_code == 2


def test_clean_only_when_every_package_was_checked():
    outcome = classify(0, report({"name": "segno", "version": "1.6.6", "vulns": []}), "")
    assert outcome.exit_code == 0
    assert outcome.lines == ["pip-audit: 1 packages checked, no known vulnerabilities."]


def test_real_run_without_network_says_not_audited(tmp_path):
    env = {
        **os.environ,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    result = subprocess.run(
        [sys.executable, "scripts/pip_audit_check.py", "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT AUDITED" in result.stderr
    assert "No known vulnerabilities" not in result.stdout + result.stderr
