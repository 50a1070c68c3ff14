"""Tiny HTML reading for page tests (no bs4 in the dev dependencies): find elements by tag,
class or attribute and read their text, so tests check structure rather than exact wording."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag=tag, attrs={name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in VOID_TAGS:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag=tag, attrs={name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index].tag == tag:
                del self.open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.parts.append(data)


def find_all(html: str | bytes, tag: str | None = None, cls: str | None = None, **attrs: str):
    """Elements matching ``tag``, a CSS class ``cls`` and exact attribute values (``name_``
    for reserved words, underscores for dashes: ``data_status="paid"``)."""
    if isinstance(html, bytes):
        html = html.decode()
    parser = _Parser()
    parser.feed(html)
    parser.close()
    wanted = {name.rstrip("_").replace("_", "-"): value for name, value in attrs.items()}
    return [
        element
        for element in parser.elements
        if (tag is None or element.tag == tag)
        and (cls is None or cls in element.classes)
        and all(element.attrs.get(name) == value for name, value in wanted.items())
    ]


def texts(html: str | bytes, tag: str | None = None, cls: str | None = None, **attrs: str):
    return [element.text for element in find_all(html, tag, cls, **attrs)]
