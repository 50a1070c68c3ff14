"""A self-hosted captcha: a small sum drawn as an SVG of jittered dots (no text element, no
third-party service; Pillow is not a dependency of ours).

The challenge lives in the server-side session: its id, the answer as a keyed hash, an expiry
and the picture. It is good for one answer: checking it removes it, right or wrong. A captcha
only slows scripts down; it is one signal among the risk rules, never the only defence.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import time
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.utils.crypto import salted_hmac

SESSION_KEY = "risk_captcha"
CHALLENGE_TTL_SECONDS = 5 * 60

_rng = secrets.SystemRandom()

# A 5×7 dot-matrix font for the glyphs a sum needs.
_FONT: dict[str, tuple[str, ...]] = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "+": ("00000", "00100", "00100", "11111", "00100", "00100", "00000"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    "=": ("00000", "00000", "11111", "00000", "11111", "00000", "00000"),
    "?": ("01110", "10001", "00001", "00010", "00100", "00000", "00100"),
}
_CELL = 5  # pixels per font dot
_GLYPH_WIDTH = 40
WIDTH_PADDING = 16
HEIGHT = 64


class Verdict(enum.Enum):
    NO_CHALLENGE = "none"
    PASSED = "passed"
    WRONG = "wrong"
    EXPIRED = "expired"


def new_question() -> tuple[str, str]:
    """A sum a person does at a glance: ``"12+7=?"`` → ``"19"``; never negative."""
    a, b = _rng.randint(2, 19), _rng.randint(1, 9)
    if _rng.random() < 0.5 and a > b:
        return f"{a}-{b}=?", str(a - b)
    return f"{a}+{b}=?", str(a + b)


def _digest(challenge_id: str, answer: str) -> str:
    return salted_hmac(
        "cardvault.risk.captcha", f"{challenge_id}:{answer}", algorithm="sha256"
    ).hexdigest()


def issue_challenge(session: SessionBase, *, now: float | None = None) -> str:
    """Put a fresh challenge in the session (replacing any other); returns its id."""
    question, answer = new_question()
    challenge_id = secrets.token_hex(8)
    session[SESSION_KEY] = {
        "id": challenge_id,
        "answer": _digest(challenge_id, answer),
        "expires": (now if now is not None else time.time()) + CHALLENGE_TTL_SECONDS,
        "svg": render_svg(question),
    }
    return challenge_id


def _live(session: SessionBase, now: float | None = None) -> dict[str, Any] | None:
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    if data.get("expires", 0) < (now if now is not None else time.time()):
        return None
    return data


def current_challenge_id(session: SessionBase) -> str:
    """The id of the challenge waiting for an answer, or "" if none."""
    data = _live(session)
    return str(data["id"]) if data is not None else ""


def challenge_svg(session: SessionBase) -> str | None:
    data = _live(session)
    return str(data["svg"]) if data is not None else None


def check_answer(session: SessionBase, answer: str, *, now: float | None = None) -> Verdict:
    """Check and spend the session's challenge: it is removed whatever the answer."""
    data = session.pop(SESSION_KEY, None)
    if not isinstance(data, dict):
        return Verdict.NO_CHALLENGE
    if data.get("expires", 0) < (now if now is not None else time.time()):
        return Verdict.EXPIRED
    given = "".join(answer.split())[:8]
    expected = str(data.get("answer", ""))
    if given and hmac.compare_digest(_digest(str(data.get("id", "")), given), expected):
        return Verdict.PASSED
    return Verdict.WRONG


def render_svg(text: str) -> str:
    """Draw ``text`` as jittered, slightly rotated dots over noise dots and lines."""
    width = len(text) * _GLYPH_WIDTH + 2 * WIDTH_PADDING
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
        f'viewBox="0 0 {width} {HEIGHT}">',
        f'<rect width="{width}" height="{HEIGHT}" fill="#f4f1ea"/>',
    ]
    for _ in range(len(text) * 9):  # background speckle, lighter than the glyphs
        parts.append(_dot(_rng.uniform(0, width), _rng.uniform(0, HEIGHT), light=True))
    for index, char in enumerate(text):
        x0 = WIDTH_PADDING + index * _GLYPH_WIDTH + _rng.uniform(-3, 3)
        y0 = (HEIGHT - 7 * _CELL) / 2 + _rng.uniform(-6, 6)
        angle = _rng.uniform(-18, 18)
        cx, cy = x0 + 2.5 * _CELL, y0 + 3.5 * _CELL
        parts.append(f'<g transform="rotate({angle:.1f} {cx:.1f} {cy:.1f})">')
        for row, bits in enumerate(_FONT[char]):
            for col, bit in enumerate(bits):
                if bit == "1":
                    parts.append(
                        _dot(
                            x0 + col * _CELL + _rng.uniform(-0.8, 0.8),
                            y0 + row * _CELL + _rng.uniform(-0.8, 0.8),
                            light=False,
                        )
                    )
        parts.append("</g>")
    for _ in range(3):  # strokes across the whole picture
        points = " ".join(
            f"{x:.0f},{_rng.uniform(8, HEIGHT - 8):.0f}"
            for x in (0, width / 3, 2 * width / 3, width)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="#6b5d4f" '
            f'stroke-width="{_rng.uniform(1, 2):.1f}" opacity="0.55"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _dot(x: float, y: float, *, light: bool) -> str:
    size = _rng.uniform(2.5, 4.0) if light else _rng.uniform(4.2, 5.6)
    shade = _rng.randint(150, 200) if light else _rng.randint(20, 90)
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{size:.1f}" height="{size:.1f}" '
        f'fill="rgb({shade},{shade - 10},{shade - 20})"/>'
    )
