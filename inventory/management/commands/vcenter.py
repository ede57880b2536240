"""`manage.py vcenter add|list|test|remove`: vCenter connections from the command line."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory import actions
from inventory import vcenter as vsphere
from inventory.connection import ConnectionParams
from inventory.models import VCenter
from lib.cli import print_rows, shown


class Command(BaseCommand):
    help = "Manage vCenter connections."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="test and save a connection")
        add.add_argument("name")
        add.add_argument("--host", required=True)
        add.add_argument("--port", type=int, default=443)
        add.add_argument("--user", required=True)
        add.add_argument("--password-stdin", action="store_true", required=True, help="read the password from stdin")
        trust = add.add_mutually_exclusive_group()
        trust.add_argument("--thumbprint", default="", help="pin the server certificate's SHA-256 thumbprint")
        trust.add_argument("--insecure", action="store_true", help="do not verify the certificate (labs only)")
        add.add_argument("--plain-http", action="store_true", help="speak plain HTTP (the simulator only)")
        listing = sub.add_parser("list", help="list connections")
        listing.add_argument("--json", action="store_true")
        test = sub.add_parser("test", help="log in and report the server's identity")
        test.add_argument("name")
        remove = sub.add_parser("remove", help="remove a connection and its inventory")
        remove.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_add(self, options: dict[str, Any]) -> None:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("No password on stdin.")
        try:
            params = ConnectionParams(
                name=options["name"],
                host=options["host"],
                port=options["port"],
                username=options["user"],
                password=password,
                protocol=VCenter.Protocol.HTTP if options["plain_http"] else VCenter.Protocol.HTTPS,
                verify_tls=not (options["insecure"] or options["plain_http"]),
                thumbprint=actions.normalise_thumbprint(options["thumbprint"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if VCenter.objects.filter(name=params.name).exists():
            raise CommandError(f"A connection named {params.name!r} already exists.")
        try:
            vc = actions.add_vcenter(None, params)
        except vsphere.CertificateNotTrusted as exc:
            raise CommandError(f"{exc}\nTo trust it, add --thumbprint {exc.thumbprint}") from None
        except vsphere.VCenterError as exc:
            raise CommandError(str(exc)) from None
        if not params.verify_tls and not params.thumbprint:
            self.stderr.write("Warning: the server's certificate is not verified for this connection.")
        self.stdout.write(f"Added {shown(vc.name)} ({shown(vc.version)}); an inventory sync is queued.")

    def do_list(self, options: dict[str, Any]) -> None:
        rows = [
            {
                "name": vc.name,
                "address": f"{vc.protocol}://{vc.host}:{vc.port}",
                "user": vc.username,
                "security": "not verified" if vc.insecure else ("pinned" if vc.thumbprint else "verified"),
                "vms": vc.vms.filter(removed_at__isnull=True).count(),
                "last_sync": vc.last_sync.isoformat(timespec="seconds") if vc.last_sync else None,
                "last_error": vc.last_sync_error or None,
            }
            for vc in VCenter.objects.all()
        ]
        print_rows(
            self.stdout,
            rows,
            as_json=options["json"],
            headers=["NAME", "ADDRESS", "USER", "SECURITY", "VMS", "LAST SYNC"],
            cells=lambda r: [r["name"], r["address"], r["user"], r["security"], r["vms"], r["last_sync"] or "never"],
        )

    def do_test(self, options: dict[str, Any]) -> None:
        vc = _get(options["name"])
        params = ConnectionParams.of(vc)
        try:
            report = actions.test_connection(params)
        except vsphere.VCenterError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"OK: {shown(report.about.full_name)} (instance {shown(report.about.instance_uuid)})")
        if report.thumbprint:
            self.stdout.write(f"Certificate SHA-256: {report.thumbprint}")

    def do_remove(self, options: dict[str, Any]) -> None:
        vc = _get(options["name"])
        try:
            actions.remove_vcenter(None, vc)
        except actions.VCenterHoldsPoints as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Removed {shown(vc.name)}.")


def _get(name: str) -> VCenter:
    try:
        return VCenter.objects.get(name=name)
    except VCenter.DoesNotExist:
        raise CommandError(f"No vCenter connection named {name!r}.") from None
