"""A small HTML reader for the no-JavaScript page tests: forms, buttons, links and text."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Button:
    name: str | None
    value: str | None
    text: str  # the accessible name as a screen reader gets it from the content


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[Button] = field(default_factory=list)


@dataclass
class Page:
    forms: list[Form] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    scripts: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)

    def form(self, action_part: str) -> Form:
        found = [f for f in self.forms if action_part in f.action]
        assert found, f"no form posting to {action_part!r}: {[f.action for f in self.forms]}"
        return found[0]

    def slot_buttons(self) -> list[Button]:
        return [b for f in self.forms for b in f.buttons if b.name == "start"]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._form: Form | None = None
        self._button: Button | None = None
        self._link: list[str] | None = None
        self._text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "style"):
            self._skip += 1
            if tag == "script" and "src" in a:
                self.page.scripts.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.page.styles.append(a.get("href", ""))
        if tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower())
            self.page.forms.append(self._form)
        elif tag == "input" and self._form is not None and "name" in a:
            self._form.fields[a["name"]] = a.get("value", "")
        elif tag == "select" and self._form is not None:
            self._form.fields[a.get("name", "")] = ""
        elif tag == "button":
            self._button = Button(a.get("name"), a.get("value"), "")
        elif tag == "a":
            self._link = [a.get("href", ""), ""]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        if tag == "form":
            self._form = None
        elif tag == "button" and self._button is not None:
            self._button.text = " ".join(self._button.text.split())
            if self._form is not None:
                self._form.buttons.append(self._button)
            self._button = None
        elif tag == "a" and self._link is not None:
            self.page.links.append((self._link[0], " ".join(self._link[1].split())))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._text.append(data)
        if self._button is not None:
            self._button.text += data
        if self._link is not None:
            self._link[1] += data

    def close(self) -> None:
        super().close()
        self.page.text = " ".join(" ".join(self._text).split())


def read(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page
