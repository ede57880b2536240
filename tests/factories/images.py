"""The programs tests run to build and read disk images (besides those tools/diskimages runs), where
they are looked for, and the Debian package of each; all in make test's list (tools/system-packages.sh)."""

from __future__ import annotations

import os

from tools import diskimages

# sbin directories too: mkfs.* live there and are not on a plain user's PATH.
TOOL_DIRS = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TOOL_PACKAGES = {**diskimages.TOOL_PACKAGES, "mkfs.xfs": "xfsprogs", "ntfssecaudit": "ntfs-3g"}
