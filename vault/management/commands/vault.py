"""`manage.py vault status|configure|key|replicate|verify|repair|reconcile|prune|gc|tier|rehydrate|lock|delete`:
the vault from a shell.

Slow work runs as jobs (add --wait to follow one); every change is audited as the command-line user.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from jobs import runner
from jobs.cli import wait_for_job
from jobs.models import JobRun
from lib.cli import print_json, print_table, shown
from vault import actions, archive, healing, jobs, queries
from vault.models import LOCAL_TIER, VAULT_TIER, RecoveryPoint, VaultSettings
from vault.reconcile import reconcile

CLI_ACTOR = "command line"


def _mib(n: int | None) -> str:
    return f"{(n or 0) / 2**20:,.1f} MiB"


class Command(BaseCommand):
    help = "Show and manage the vault: replication, retention, garbage collection, verification, locks."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="capacity, ratios, replication lag, last GC and verify")
        status.add_argument("--json", action="store_true")

        conf = sub.add_parser("configure", help="set where the vault is")
        where = conf.add_mutually_exclusive_group(required=True)
        where.add_argument("--none", action="store_true", help="no vault: local store only")
        where.add_argument("--directory", help="a directory (mounted share, second disk)")
        where.add_argument(
            "--azure-connection-string-env",
            metavar="VAR",
            help="Azure Blob: read the connection string from this environment variable (never from argv)",
        )
        where.add_argument("--azure-account-url", help="Azure Blob account URL, with DefaultAzureCredential")
        conf.add_argument("--container", default=None)
        conf.add_argument("--bandwidth", type=int, default=None, help="upload limit in MB/s (0: none)")
        conf.add_argument("--tier-after-days", type=int, default=None)
        conf.add_argument("--tier", choices=[c for c, _ in VaultSettings.Tier.choices])

        key = sub.add_parser("key", help="encryption key: create one for a new vault, or import one")
        key_action = key.add_mutually_exclusive_group(required=True)
        key_action.add_argument("--create", action="store_true")
        key_action.add_argument("--import-env", metavar="VAR", help="read the key from this environment variable")

        for name, text in (
            ("replicate", "copy points to the vault (default: every point waiting for it)"),
            ("verify", "re-read and re-hash points (default: all)"),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument("points", nargs="*", help="point ids (prefixes are fine)")
            p.add_argument("--wait", action="store_true")
            if name == "verify":
                p.add_argument("--vault", action="store_true", help="verify the vault copies instead of local")

        repair = sub.add_parser("repair", help="repair bad chunks from the other tier; list what cannot be repaired")
        repair.add_argument("--wait", action="store_true")

        reconcile = sub.add_parser("reconcile", help="make the store's points and the database's rows agree")
        reconcile.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")

        for name, text in (("prune", "apply retention"), ("gc", "collect garbage"), ("tier", "apply tiering")):
            p = sub.add_parser(name, help=text)
            p.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
            p.add_argument("--wait", action="store_true")

        rehydrate = sub.add_parser("rehydrate", help="bring a point's archived chunks back online (billed by Azure)")
        rehydrate.add_argument("point")
        rehydrate.add_argument("--priority", choices=archive.PRIORITIES, default="Standard")
        rehydrate.add_argument("--yes", action="store_true", help="start it: without, say what it costs and takes")

        lock = sub.add_parser("lock", help="retention lock: the point cannot be deleted before DATE")
        lock.add_argument("point")
        lock.add_argument("--until", required=True, help="YYYY-MM-DD or an ISO date-time")

        delete = sub.add_parser("delete", help="delete a point from both tiers (refused while locked)")
        delete.add_argument("point")
        delete.add_argument("--yes", action="store_true", help="do not ask")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, f"do_{options['action']}")
        try:
            handler(options)
        except actions.VaultActionError as exc:
            raise CommandError(str(exc)) from None

    # Subcommands ----------------------------------------------------------------------------------

    def do_status(self, options: dict[str, Any]) -> None:
        info = queries.overview()
        if options["json"]:
            print_json(self.stdout, info.as_dict())
            return
        ratio = lambda r: f"{r:.2f}x" if r else "—"  # noqa: E731
        rows: list[list[Any]] = [
            ["vault", info.description + (" (encrypted)" if info.config.encrypted else "")],
            ["local points", info.local_points],
            ["local store used", _mib(info.local_used_bytes)],
            ["disk images held", _mib(info.logical_bytes)],
            ["dedup ratio", ratio(info.dedup_ratio)],
            ["compression ratio", ratio(info.compression_ratio)],
            ["vault points", info.vault_points],
            ["waiting for the vault", f"{info.backlog} (lag {info.lag or '—'})"],
            ["damaged points", f"{info.damaged_points} ({info.repaired_points} repaired since damage was found)"],
        ]
        for tier, usage in sorted(info.tiers.items()):
            rows.append([f"vault {tier}", f"{_mib(usage['bytes'])} in {usage['blobs']} blobs"])
        for label, run in (("last GC", info.last_gc), ("last verify", info.last_verify)):
            rows.append([label, f"{run.status} {run.finished:%Y-%m-%d %H:%M}" if run and run.finished else "never"])
        print_table(self.stdout, ["", ""], rows)

    def do_configure(self, options: dict[str, Any]) -> None:
        config = VaultSettings.current()
        secret = None
        if options["none"]:
            config.kind = VaultSettings.Kind.NONE
        elif options["directory"]:
            config.kind, config.directory = VaultSettings.Kind.DIRECTORY, os.path.abspath(options["directory"])
        elif options["azure_connection_string_env"]:
            secret = os.environ.get(options["azure_connection_string_env"], "")
            if not secret:
                raise CommandError(f"The environment variable {options['azure_connection_string_env']} is empty.")
            config.kind, config.auth = VaultSettings.Kind.AZURE, VaultSettings.Auth.CONNECTION_STRING
        else:
            config.kind, config.auth = VaultSettings.Kind.AZURE, VaultSettings.Auth.DEFAULT_CREDENTIAL
            config.account_url = options["azure_account_url"]
        if options["container"]:
            config.container = options["container"]
        if options["bandwidth"] is not None:
            config.bandwidth_mb_per_s = options["bandwidth"] or None
        if options["tier_after_days"] is not None:
            config.tier_after_days = options["tier_after_days"] or None
        if options["tier"]:
            config.tier = options["tier"]
        if config.enabled:
            actions.check_vault(config, secret=secret)  # one clear error, and nothing saved
        actions.save_settings(CLI_ACTOR, config, secret=secret)
        self.stdout.write(f"Vault: {queries.overview().description}.")

    def do_key(self, options: dict[str, Any]) -> None:
        if options["create"]:
            key = actions.create_encryption_key(CLI_ACTOR)
            self.stdout.write("Vault encryption is on. Keep this key somewhere safe, away from this server:")
            self.stdout.write(f"  {key}")
            self.stdout.write("Without it nothing in the vault can be restored: a lost key means lost backups.")
            return
        value = os.environ.get(options["import_env"], "")
        actions.import_encryption_key(CLI_ACTOR, value)
        self.stdout.write(f"Key imported (fingerprint {VaultSettings.current().key_fingerprint}).")

    def _points(self, prefixes: list[str], default: Any) -> list[RecoveryPoint]:
        if not prefixes:
            return list(default)
        found = []
        for prefix in prefixes:
            matches = list(RecoveryPoint.objects.filter(pk__startswith=prefix.lower())[:2]) if prefix else []
            if len(matches) != 1:
                raise CommandError(f"{prefix!r} names {'no' if not matches else 'more than one'} recovery point.")
            found.append(matches[0])
        return found

    def _start(self, kind: str, params: dict[str, Any], wait: bool, label: str) -> None:
        self._follow(runner.enqueue(kind, params=params, target_label=label), wait)

    def _follow(self, run: JobRun, wait: bool) -> None:
        self.stdout.write(f"{shown(run.title)}: job {run.pk}.")
        if wait:
            wait_for_job(self.stdout, run)

    def do_replicate(self, options: dict[str, Any]) -> None:
        if not VaultSettings.current().enabled:
            raise CommandError("No vault is configured: see `manage.py vault configure`.")
        points = self._points(options["points"], actions.replication_backlog())
        if not points:
            self.stdout.write("Nothing waits for the vault.")
            return
        ids = [str(p.pk) for p in points]
        self._start(actions.REPLICATE_KIND, {"point_ids": ids}, options["wait"], f"{len(ids)} point(s)")

    def do_verify(self, options: dict[str, Any]) -> None:
        tier = VAULT_TIER if options["vault"] else LOCAL_TIER
        chosen = self._points(options["points"], []) if options["points"] else None  # None: every point in the tier
        self._follow(jobs.enqueue_verify(tier, points=chosen), options["wait"])

    def do_repair(self, options: dict[str, Any]) -> None:
        known = healing.recorded_damage()
        damaged = RecoveryPoint.objects.filter(damaged=True).count()
        self.stdout.write(
            f"Known damage: {damaged} point(s); {len(known.get(healing.LOCAL, ()))} chunk(s) bad in the local store, "
            f"{len(known.get(healing.VAULT, ()))} in the vault (plus any moved aside by reads since)."
        )
        # The job's log lists each chunk repaired and each one that cannot be (printed with --wait).
        self._start(jobs.REPAIR_KIND, {}, options["wait"], "both tiers")

    def do_reconcile(self, options: dict[str, Any]) -> None:
        report = reconcile(dry_run=options["dry_run"], actor=CLI_ACTOR)
        for line in report.lines():
            self.stdout.write(line)

    def do_prune(self, options: dict[str, Any]) -> None:
        if options["dry_run"]:
            plan = actions.plan_prune()
            rows = [[i.tier, str(i.point.pk)[:8], str(i.point), i.reason] for i in plan.remove]
            rows += [[f"{i.tier} (held)", str(i.point.pk)[:8], str(i.point), i.reason] for i in plan.held]
            print_table(self.stdout, ["TIER", "ID", "POINT", "WHY"], rows)
            self.stdout.write(f"{len(plan.remove)} would go, {len(plan.held)} held, {plan.kept} kept.")
            return
        self._start(jobs.PRUNE_KIND, {}, options["wait"], "retention")

    def do_gc(self, options: dict[str, Any]) -> None:
        self._start(jobs.GC_KIND, {"dry_run": options["dry_run"]}, options["wait"], "both tiers")

    def do_tier(self, options: dict[str, Any]) -> None:
        self._start(jobs.TIER_KIND, {"dry_run": options["dry_run"]}, options["wait"], "vault")

    def do_rehydrate(self, options: dict[str, Any]) -> None:
        (point,) = self._points([options["point"]], [])
        priority = options["priority"]
        self.stdout.write(archive.cost(point, priority))
        if not options["yes"]:
            self.stdout.write("Nothing was started: add --yes to start the rehydration.")
            return
        after = actions.rehydrate_point(CLI_ACTOR, point, priority=priority)
        if after.archived:
            started = f"started at {priority} priority"
            self.stdout.write(f"Rehydration of {after.archived} chunk(s) of {shown(point)} {started}.")
        else:
            self.stdout.write(f"{shown(point)} is online: it can be browsed and restored now.")

    def do_lock(self, options: dict[str, Any]) -> None:
        (point,) = self._points([options["point"]], [])
        until = _parse_until(options["until"])
        actions.lock_point(CLI_ACTOR, point, until)
        self.stdout.write(f"{shown(point)} is locked until {until:%Y-%m-%d %H:%M %Z}.")

    def do_delete(self, options: dict[str, Any]) -> None:
        (point,) = self._points([options["point"]], [])
        if not options["yes"] and input(f"Delete {point} from every tier? Type 'delete': ").strip() != "delete":
            raise CommandError("Not deleted.")
        actions.delete_point(CLI_ACTOR, point)
        self.stdout.write(f"{shown(point)} deleted.")


def _parse_until(text: str) -> dt.datetime:
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO date-time.")
        moment = dt.datetime.combine(day, dt.time(0, 0))
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment
