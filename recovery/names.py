"""File names as the product shows and accepts them: valid text, no control characters, reversible.

A guest's file names are not always text. ext4 and XFS store bytes (any but "/" and NUL, so
b"caf\\xe9" in latin-1 or a name with a newline are legal); NTFS and FAT store UTF-16 units, which
may be unpaired surrogates. `recovery.filesystems` decodes them losslessly into a *raw* str (bytes
through "surrogateescape", UTF-16 through "surrogatepass"), which cannot be encoded as UTF-8 and so
cannot reach a page, a URL, JSON or a terminal. It hands everything else *escaped* names instead:

    \\xNN    one byte that is not UTF-8 (bytes file systems), or a control character U+0000-U+001F
            or U+007F (any file system): b"caf\\xe9" -> "caf\\xe9", "new\\nline" -> "new\\x0aline"
    \\uNNNN  an unpaired UTF-16 surrogate (NTFS, FAT), a C1 control character U+0080-U+009F, or a
            line or paragraph separator (U+2028, U+2029): "\\udc80"
    \\\\      a backslash in the name itself, so the escapes above are never ambiguous

Hex digits are written lower-case and read in either case. Every other character is kept as is,
"/" is never escaped (no raw name holds it), so `escape` works on whole paths too. `unescape` undoes
it exactly, and leaves any other backslash sequence as typed (an old link or a hand-typed path with a
lone backslash still finds its file). `original_bytes` gives the bytes to write on Linux.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode categories escaped beyond C0/DEL: C1 controls, surrogates, line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_SURROGATE_BYTES = range(0xDC80, 0xDD00)  # what "surrogateescape" makes of the bytes 0x80-0xFF
_ESCAPE = re.compile(r"\\(?:\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def _escaped_char(char: str, *, from_bytes: bool) -> str | None:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if from_bytes and code in _SURROGATE_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if code >= 0x80 and unicodedata.category(char) in _ESCAPED_CATEGORIES:
        return f"\\u{code:04x}"
    return None


def printable(raw: str, *, from_bytes: bool = True) -> str:
    """Like `escape`, but a backslash stays single: for text only shown, never looked up (link targets,
    where Windows paths are full of backslashes)."""
    return escape(raw, from_bytes=from_bytes).replace("\\\\", "\\")


def escape(raw: str, *, from_bytes: bool = True) -> str:
    """The escaped form of a raw name or path (see the module docstring).

    `from_bytes`: the name was decoded from bytes with "surrogateescape" (ext, XFS), so U+DC80 to
    U+DCFF stand for the bytes 0x80-0xFF and become \\xNN; from UTF-16 (NTFS, FAT) they are real
    unpaired surrogates and become \\uDCNN.
    """
    if raw.isascii() and raw.isprintable() and "\\" not in raw:
        return raw  # the common case, without a per-character loop
    out = []
    for char in raw:
        escaped = _escaped_char(char, from_bytes=from_bytes)
        out.append(char if escaped is None else escaped)
    return "".join(out)


def _unescape_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if text == "\\\\":
        return "\\"
    value = int(text[2:], 16)
    if text[1] == "x" and value >= 0x80:
        return chr(0xDC00 + value)  # a byte that is not UTF-8, as "surrogateescape" decodes it
    return chr(value)


def unescape(name: str) -> str:
    """The raw name (or path) an escaped one stands for; `unescape(escape(raw)) == raw`."""
    if "\\" not in name:
        return name
    return _ESCAPE.sub(_unescape_match, name)


def original_bytes(name: str) -> bytes | None:
    """The bytes a Linux file system would hold for this escaped name, or None when there are none.

    ext/XFS names come back byte for byte. A name with an unpaired UTF-16 surrogate (\\uD800 to
    \\uDFFF, from NTFS) has no UTF-8 spelling: None, and the caller writes the escaped name instead.
    """
    try:
        return _original_bytes(name)
    except UnicodeEncodeError:
        return None  # a raw name with an unpaired surrogate, passed unescaped


def _original_bytes(name: str) -> bytes | None:
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(name):
        out += _utf8(name[position : match.start()])
        text = match.group(0)
        if text == "\\\\":
            out += b"\\"
        elif text[1] == "x":
            out.append(int(text[2:], 16))
        else:
            value = int(text[2:], 16)
            if 0xD800 <= value <= 0xDFFF:
                return None
            out += chr(value).encode("utf-8")
        position = match.end()
    out += _utf8(name[position:])
    return bytes(out)


def _utf8(text: str) -> bytes:
    # Escaped text holds no surrogates; a raw name passed by mistake keeps its bytes all the same.
    return text.encode("utf-8", "surrogateescape")
