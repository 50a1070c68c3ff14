"""Run pip-audit on the installed environment and say plainly which of three things happened.

* findings: known vulnerabilities in installed packages -> list them, exit 1;
* NOT AUDITED: the vulnerability database could not be reached (offline machine, PyPI's JSON API
  blocked), so some or all packages were skipped -> a loud warning, exit 0, because an outage
  elsewhere must not block lint, but nobody should read it as "no known vulnerabilities";
* clean: every package was checked and none has a known vulnerability -> exit 0.

pip-audit on its own prints "No known vulnerabilities found" even when it skipped every package,
and ``--strict`` turns the same outage into a failure indistinguishable from a finding; so this
script runs it without ``--strict``, reads its JSON report and is strict itself.

Usage: python scripts/pip_audit_check.py [extra pip-audit arguments]
"""

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field

NETWORK_ERROR = re.compile(
    r"ConnectionError|ConnectTimeout|ReadTimeout|Max retries exceeded|Name or service not known|"
    r"Temporary failure in name resolution|Failed to establish a new connection|ProxyError|"
    r"SSLError|Connection refused|Network is unreachable|timed out",
    re.IGNORECASE,
)
BANNER = "=" * 72
SHOWN = 8


@dataclass
class Outcome:
    exit_code: int
    lines: list[str] = field(default_factory=list)


def classify(returncode: int, stdout: str, stderr: str) -> Outcome:
    """Turn one pip-audit run (``-f json``) into findings / NOT AUDITED / clean."""
    try:
        report = json.loads(stdout)
    except ValueError:
        report = None
    if not isinstance(report, dict) or "dependencies" not in report:
        if NETWORK_ERROR.search(stderr):
            return Outcome(0, _not_audited(["the vulnerability database could not be reached"]))
        return Outcome(2, ["pip-audit failed:", stderr.strip() or f"exit status {returncode}"])
    findings: list[str] = []
    skipped: list[str] = []
    audited = 0
    for dependency in report["dependencies"]:
        name = f"{dependency.get('name')} {dependency.get('version', '')}".strip()
        if "skip_reason" in dependency:
            if "editable" in dependency["skip_reason"]:
                continue  # this project itself, installed with pip install -e
            skipped.append(f"{name}: {dependency['skip_reason']}")
            continue
        audited += 1
        for vuln in dependency.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            findings.append(f"{name}: {vuln.get('id')} (fixed in: {fixes})")
    if findings:
        return Outcome(1, ["pip-audit found known vulnerabilities:", *findings])
    if skipped:
        summary = f"{len(skipped)} of {len(skipped) + audited} packages were not checked"
        return Outcome(0, _not_audited([summary, *skipped]))
    return Outcome(0, [f"pip-audit: {audited} packages checked, no known vulnerabilities."])


def _not_audited(reasons: list[str]) -> list[str]:
    return [
        BANNER,
        "NOT AUDITED: pip-audit could not check dependencies against the vulnerability",
        "database (offline?). This is NOT a clean result. Run `make lint` with network access.",
        *(f"  {reason}" for reason in reasons[:SHOWN]),
        *([f"  ... and {len(reasons) - SHOWN} more"] if len(reasons) > SHOWN else []),
        BANNER,
    ]


def main(argv: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--skip-editable",
        "--progress-spinner",
        "off",
        "-f",
        "json",
        *argv,
    ]
    result = subprocess.run(  # noqa: S603 - fixed command, our own interpreter
        command, capture_output=True, text=True, timeout=600, check=False
    )
    outcome = classify(result.returncode, result.stdout, result.stderr)
    loud = outcome.exit_code != 0 or any("NOT AUDITED" in line for line in outcome.lines)
    stream = sys.stderr if loud else sys.stdout
    for line in outcome.lines:
        print(line, file=stream)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
