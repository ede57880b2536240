"""Every form control on the main pages has a label, and status badges carry text."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

pytestmark = pytest.mark.django_db

PAGES = ["/", "/inventory/", "/protection/", "/protection/new/", "/recovery/", "/jobs/", "/vault/", "/settings/"]


class Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str]] = []
        self.label_for: set[str] = set()
        self.in_label = 0
        self.badges: list[str] = []
        self._badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "label":
            self.in_label += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit", "button"):
            self.controls.append({**a, "_wrapped": str(self.in_label > 0), "_tag": tag})
        if tag == "span" and "badge" in a.get("class", "").split():
            self._badge = True
            self.badges.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1
        if tag == "span":
            self._badge = False

    def handle_data(self, data: str) -> None:
        if self._badge:
            self.badges[-1] += data.strip()


@pytest.mark.parametrize("url", PAGES)
def test_every_control_has_a_label_and_every_badge_has_text(as_admin, url):
    folders = create_test_tree(create_test_vcenter(), ["Prod"])
    create_test_vm(folders["Prod"], "web-01")
    parser = Controls()
    parser.feed(as_admin.get(url).content.decode())
    unlabelled = [
        c
        for c in parser.controls
        if c["_wrapped"] != "True" and c.get("id") not in parser.label_for and not c.get("aria-label")
    ]
    assert not unlabelled, unlabelled
    assert all(parser.badges), parser.badges
