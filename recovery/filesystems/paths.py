"""Paths inside a volume: '/'-separated and absolute, and none escapes the root."""

from __future__ import annotations


def split_path(path: str) -> list[str]:
    """The segments of an absolute or relative path; rejects ".." and NUL so nothing escapes the root."""
    if not isinstance(path, str):
        raise TypeError(f"path must be str, not {type(path).__name__}")
    if "\0" in path:
        raise ValueError("path contains a NUL character")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"'..' is not allowed in paths: {path!r}")
    return parts


def join_path(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"
