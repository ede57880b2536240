"""Typed construction of pyVmomi objects.

pyVmomi ships type stubs for its data objects (ConfigSpec, VirtualDisk, FilterSpec, ...) and managed
objects (Folder, VirtualMachine, ...), but their constructors are unannotated, so
`vim.vm.ConfigSpec(name=...)` is an untyped call. build() and managed() make the same calls through a
type variable: the result has the stub's type, so a misspelt field read later is caught. (Unknown
keyword arguments are still only caught by pyVmomi, at run time.) Methods of managed objects are not
in the stubs: what they return is Any.
"""

from __future__ import annotations

from typing import TypeVar

from pyVmomi.VmomiSupport import DataObject, ManagedObject

_Data = TypeVar("_Data", bound=DataObject)
_Managed = TypeVar("_Managed", bound=ManagedObject)


def build(kind: type[_Data], **fields: object) -> _Data:
    """kind(**fields), typed: build(vim.vm.ConfigSpec, name="web-01") is a vim.vm.ConfigSpec."""
    return kind(**fields)


def moref_of(obj: ManagedObject) -> str:
    """The managed object's id ("vm-42"), as a str (pyVmomi leaves _moId untyped)."""
    return str(obj._moId)


def managed(kind: type[_Managed], moref: str, stub: object) -> _Managed:
    """A reference to a managed object (vim.Folder "group-v3") on a SOAP stub, typed as kind; no round
    trip (Connection.ref is the usual way)."""
    return kind(moref, stub)
