"""Names the command line prints come from vCenter, guests and directories, and may hold control
characters: a newline would forge a line of output, an escape sequence would drive the terminal. The
human-readable output shows them escaped (as \\xNN or \\uNNNN, the way file names are); JSON keeps them,
escaped so that no raw control byte reaches the terminal either."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command

from lib.cli import shown
from tests.inventory.factories import create_test_tree, create_test_vcenter, create_test_vm

HOSTILE = "web\x1b[2J\x1b]0;owned\x07\nFAKE ROW\r\t\x7f\x9b31m\u2028end"
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # newline and tab aside


def test_shown_escapes_every_control_character_and_keeps_the_rest():
    assert shown(HOSTILE) == "web\\x1b[2J\\x1b]0;owned\\x07\\x0aFAKE ROW\\x0d\\x09\\x7f\\u009b31m\\u2028end"
    assert shown("Café ✓ 10 GiB") == "Café ✓ 10 GiB"
    assert shown(42) == "42"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_a_vm_name_with_control_characters_stays_on_its_own_line_in_the_listing():
    vc = create_test_vcenter()
    create_test_vm(create_test_tree(vc, ["Prod"])["Prod"], HOSTILE)
    create_test_vm(create_test_tree(vc, ["Prod"])["Prod"], "db-01")

    listing = run("vms")

    assert not RAW_CONTROL.search(listing) and "\t" not in listing
    assert len(listing.splitlines()) == 3  # the header and one line per VM: no forged row
    assert shown(HOSTILE) in listing


@pytest.mark.django_db
def test_json_output_keeps_the_name_exactly_without_a_raw_control_byte():
    vc = create_test_vcenter()
    create_test_vm(create_test_tree(vc, ["Prod"])["Prod"], HOSTILE)

    output = run("vms", "--json")

    assert not RAW_CONTROL.search(output)
    assert [vm["name"] for vm in json.loads(output)] == [HOSTILE]


@pytest.mark.django_db
def test_a_vcenter_name_is_escaped_in_the_connection_listing_and_messages():
    vc = create_test_vcenter(name="lab\x1b[31m\nvc")

    listing = run("vcenter", "list")
    removed = run("vcenter", "remove", vc.name)

    for output in (listing, removed):
        assert not RAW_CONTROL.search(output) and "lab\\x1b[31m\\x0avc" in output
    assert removed == "Removed lab\\x1b[31m\\x0avc.\n"
