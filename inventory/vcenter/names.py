"""vCenter's escaping of entity names (ManagedEntity.name stores % / \\ as %25 %2f %5c)."""

from __future__ import annotations

import re

from .errors import InvalidName

_ESCAPE = re.compile(r"%(2[fF]|5[cC]|25)")


def unescape_name(name: str) -> str:
    """Decode the escapes vCenter applies to ManagedEntity.name ("a%2fb" -> "a/b")."""
    return _ESCAPE.sub(lambda m: bytes.fromhex(m.group(1)).decode(), name)


def escape_name(name: str) -> str:
    """vCenter's escaping of entity names: % / \\ -> %25 %2f %5c (escapes already there are kept,
    as vCenter does, so escaping twice changes nothing)."""
    return re.sub(r"%(?!(2[fF]|5[cC]|25))", "%25", name).replace("/", "%2f").replace("\\", "%5c")


MAX_NAME_LENGTH = 80  # vCenter's limit for a VM name, counted here as stored (escaped)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_vm_name(name: str) -> str:
    """The name as vCenter is to store it for a new VM, or InvalidName saying why it cannot be used.

    Every % / \\ is escaped (%25 %2f %5c), those of escapes already there too, unlike escape_name: a
    name typed as "50%2f" is stored as "50%252f" and reads back as typed, never as "50/". Refused:
    an empty name, spaces around it, control characters (line breaks, tabs), and names longer than
    MAX_NAME_LENGTH characters once escaped.
    """
    if not name.strip():
        raise InvalidName("a VM name cannot be empty")
    if name != name.strip():
        raise InvalidName(f"the VM name {name!r} starts or ends with a space; remove it")
    if _CONTROL_CHARACTERS.search(name):
        raise InvalidName(f"the VM name {name!r} contains a control character (a line break or tab, ...)")
    stored = name.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")
    if len(stored) > MAX_NAME_LENGTH:
        counted = f" ({len(stored)} once / \\ and % are escaped)" if len(stored) != len(name) else ""
        raise InvalidName(
            f"the VM name is {len(name)} characters long{counted}; vCenter allows at most {MAX_NAME_LENGTH}"
        )
    return stored
