"""Where each restored file goes, and the report of everything that did not go as named.

A selection is restored into a zip (read on Windows as often as not) or into a Linux directory.
Either target refuses some names the source held: Windows refuses `a:b`, `x.` and `CON`, and sees
`Report.txt` and `report.txt` as one name; Linux refuses nothing but "/" and NUL, yet an NTFS name
with an unpaired surrogate has no bytes there. `PathPlanner` gives every source path one target
path, folder by folder: the name made safe by the target's rule, then, when two names meet in one
folder, a deterministic suffix (`name (2).ext`, in the order the items come). Nothing is merged
and nothing is dropped; `RestoreReport` lists every rename with the original (escaped) name, every
clamped date and every item left out with the reason, and is written as RESTORE-REPORT.txt in a zip
and printed by `manage.py restore-files`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from recovery import names

REPORT_NAME = "RESTORE-REPORT.txt"

# What Windows (and so most unzip tools there) refuses in a name; "/" separates, and C0 controls
# never reach here escaped, but a caller's own text might hold them.
_WINDOWS_RESERVED = re.compile(r'[\x00-\x1f<>:"/\\|?*]')
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]}
)
MAX_COMPONENT_UNITS = 255  # NTFS and Windows: 255 UTF-16 code units in one name


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _split_extension(name: str) -> tuple[str, str]:
    """("report", ".txt"); a leading dot (".bashrc") or a long tail is not an extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        return name, ""
    return stem, "." + ext


def _fit(name: str, limit: int = MAX_COMPONENT_UNITS) -> str:
    """`name` cut to `limit` UTF-16 units, from the end of the stem so the extension survives."""
    if _utf16_units(name) <= limit:
        return name
    stem, ext = _split_extension(name)
    if _utf16_units(ext) > limit // 2:
        stem, ext = name, ""
    while stem and _utf16_units(stem + ext) > limit:
        stem = stem[:-1]
    return stem + ext


def windows_name(name: str) -> tuple[str, bool]:
    """One name as Windows can hold it, and whether it is unchanged: reserved characters as "_", no
    trailing dot or space, no device name (CON, NUL.txt, COM1 ... get "_" after the stem), at most
    255 UTF-16 units."""
    # In an escaped name "\\" is one backslash of the original: one "_", like other reserved characters.
    safe = _WINDOWS_RESERVED.sub("_", name.replace("\\\\", "\\")).rstrip(" .") or "_"
    stem, ext = safe.split(".", 1) if "." in safe else (safe, None)
    if stem.rstrip(" ").upper() in _DEVICE_NAMES:
        safe = stem + "_" + ("." + ext if ext is not None else "")
    safe = _fit(safe)
    return safe, safe == name


def linux_name(name: str) -> tuple[str, bool]:
    """One escaped name as a Linux directory holds it, and whether that is the original name: its
    original bytes (as the str Python's os functions encode back to them), or, when it has no bytes
    spelling (an NTFS unpaired surrogate), the escaped name itself."""
    raw = names.original_bytes(name)
    if raw is None or raw in (b"", b".", b".."):
        return name, False
    return raw.decode("utf-8", "surrogateescape"), True


def numbered(name: str, number: int, *, is_dir: bool) -> str:
    """`name (2).ext` for files, `name (2)` for folders, still within the length limit."""
    stem, ext = (name, "") if is_dir else _split_extension(name)
    suffix = f" ({number})"
    return _fit(stem, MAX_COMPONENT_UNITS - _utf16_units(suffix + ext)) + suffix + ext


@dataclass
class RestoreReport:
    """What a restore wrote, and each thing that did not keep its name, its date or its place."""

    files: int = 0
    folders: int = 0
    bytes: int = 0
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source path, target path)
    clamped: list[tuple[str, str, str]] = field(default_factory=list)  # (source path, date, stored as)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source path, why)
    unfinished: str = ""  # why the selection could not be read to its end (the point went away...)

    def __bool__(self) -> bool:
        return bool(self.renamed or self.clamped or self.skipped or self.unfinished)

    def text(self) -> str:
        lines = [f"Restored {self.files} file(s) and {self.folders} folder(s), {self.bytes} bytes."]
        if not self:
            return lines[0] + "\nEvery file kept its name and date.\n"
        lines.append(
            "Names are shown as the product shows them: \\xNN is a byte that is not UTF-8 or a control"
            " character, \\uNNNN an unpaired UTF-16 surrogate or another unprintable character, \\\\ a backslash."
        )
        if self.renamed:
            lines += ["", f"Renamed ({len(self.renamed)}): original name -> restored as"]
            lines += [f"  {source}  ->  {target}" for source, target in self.renamed]
        if self.clamped:
            lines += ["", f"Dates the target cannot hold ({len(self.clamped)}): date -> stored as"]
            lines += [f"  {source}  {date}  ->  {stored}" for source, date, stored in self.clamped]
        if self.skipped:
            lines += ["", f"Not restored ({len(self.skipped)}):"]
            lines += [f"  {source}  {why}" for source, why in self.skipped]
        if self.unfinished:
            lines += ["", f"INCOMPLETE: the selection could not be read to its end ({self.unfinished});"]
            lines += ["whatever it held after the last item above is missing."]
        return "\n".join(lines) + "\n"


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".", "..")]


class PathPlanner:
    """One target path for each source path, unique within its folder under the target's rules.

    `rename(name)` makes one (escaped) name safe for the target and says whether it is still the
    original name; `key(name)` says which target names are the same name (case-folded on Windows,
    as is on Linux); `show(path)` writes a target path for the report. A source path placed twice (two
    selected folders that overlap) is placed once: `place` returns None the second time. Folders an
    item sits in are placed on the way, keeping their own names when nothing clashes.
    """

    def __init__(
        self,
        rename: Callable[[str], tuple[str, bool]],
        key: Callable[[str], str],
        report: RestoreReport,
        *,
        show: Callable[[str], str] = str,
        reserved: tuple[str, ...] = (),
    ) -> None:
        self._rename, self._key, self._show, self.report = rename, key, show, report
        self._placed: dict[str, str] = {"": ""}
        self._taken: dict[str, set[str]] = {"": {key(name) for name in reserved}}

    def place(self, source: str, *, is_dir: bool) -> str | None:
        parts = _segments(source)
        if not parts:
            return None  # the root of the selection (a whole volume): the archive or folder itself
        source_key = "/".join(parts)
        if source_key in self._placed:
            return None
        parent = "/".join(parts[:-1])
        if parent not in self._placed:
            self.place(parent, is_dir=True)
        return self._assign(source_key, parts[-1], self._placed[parent], is_dir=is_dir)

    def target_of(self, source: str) -> str | None:
        return self._placed.get("/".join(_segments(source)))

    def _assign(self, source_key: str, name: str, parent_target: str, *, is_dir: bool) -> str:
        taken = self._taken.setdefault(parent_target, set())
        safe, same = self._rename(name)
        candidate, number = safe, 1
        while self._key(candidate) in taken:
            number += 1
            candidate = numbered(safe, number, is_dir=is_dir)
        taken.add(self._key(candidate))
        target = f"{parent_target}/{candidate}" if parent_target else candidate
        self._placed[source_key] = target
        if candidate != safe or not same:
            self.report.renamed.append(("/" + source_key, self._show(target)))
        return target


def zip_planner(report: RestoreReport) -> PathPlanner:
    """Names for a zip: Windows rules, case-insensitive, the report's own name kept free at the root."""
    return PathPlanner(windows_name, str.casefold, report, reserved=(REPORT_NAME,))


def linux_planner(report: RestoreReport) -> PathPlanner:
    """Names for a Linux directory: original bytes, case-sensitive."""
    return PathPlanner(linux_name, lambda name: name, report, show=names.escape)


ZIP_EARLIEST = datetime(1980, 1, 1, tzinfo=UTC)
ZIP_LATEST = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)


def zip_time(source: str, modified: datetime | None, report: RestoreReport) -> tuple[int, int, int, int, int, int]:
    """The DOS date and time a zip entry holds (1980 to 2107); a date outside is clamped and reported."""
    if modified is None:
        return (1980, 1, 1, 0, 0, 0)  # no date recorded: nothing to clamp
    stamp = modified.astimezone(UTC) if modified.tzinfo else modified.replace(tzinfo=UTC)
    clamped = min(max(stamp, ZIP_EARLIEST), ZIP_LATEST)
    if clamped != stamp:
        report.clamped.append((source, f"{stamp:%Y-%m-%d %H:%M:%S} UTC", f"{clamped:%Y-%m-%d %H:%M:%S}"))
    t = clamped.timetuple()
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
