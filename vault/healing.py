"""Damage in recovery points and its repair, as the database records it: the Django half of the
self-healing store (the engine half moves bad chunks aside and copies good ones back).

A point is *damaged* when a check (verify, replication, a restore) met one of its chunks missing or
corrupt in a tier; `damaged_chunks` lists what must come back for it to be whole again. A repair —
from the other tier, or the next backup that produces the same bytes — puts a good copy back, and
`recheck_damaged` then clears the damage and sets `repaired_at`. The `damage` sentences stay as
history once a point is repaired, so the page can say what was wrong and when it was fixed.

Every change writes its audit row inside its own transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.actions import SYSTEM_ACTOR, record
from vault import engine
from vault.engine.format import DIGEST_SIZE
from vault.models import LOCAL_TIER, VAULT_TIER, RecoveryPoint
from vault.storage import local_store, vault_if_configured

LOCAL, VAULT = LOCAL_TIER, VAULT_TIER  # the tiers, as damage records name them
NEXT_BACKUP = "the next backup writes it again"
NO_GOOD_COPY = f"no good copy in either tier; {NEXT_BACKUP}"
MAX_DAMAGE_LINES = 100  # a disk full of bad chunks must not make the row (and the page) huge


# Recording damage -------------------------------------------------------------------------------


def mark_damaged(
    point: RecoveryPoint,
    problems: Sequence[str],
    tier: str,
    *,
    digests: Iterable[str] = (),
    actor: Any = SYSTEM_ACTOR,
) -> RecoveryPoint:
    """Record damage a check of `tier` found: its sentences and the chunks (hex digests) concerned.
    Replaces what an earlier check recorded for that tier and keeps the other tier's. Audited when
    the damage is new, so a nightly verify of a point nobody has repaired yet does not repeat it."""
    with transaction.atomic():
        point = RecoveryPoint.objects.select_for_update().select_related("vm").get(pk=point.pk)
        chunks = _other_tier_chunks(point, tier) + [{"digest": d, "tier": tier} for d in sorted(set(digests))]
        damage = _other_tier_damage(point, tier) + [f"{tier}: {problem}" for problem in problems]
        is_new = not point.damaged or bool(_digests(chunks) - _digests(point.damaged_chunks))
        point.damaged = True
        point.damage = damage[:MAX_DAMAGE_LINES]
        point.damaged_chunks = chunks
        point.damaged_at = timezone.now()
        point.repaired_at = None
        point.save(update_fields=["damaged", "damage", "damaged_chunks", "damaged_at", "repaired_at"])
        if is_new:
            details = {"vm": point.vm.name, "tier": tier, "problems": list(problems[:10])}
            details["chunks"] = sorted(set(digests))[:MAX_DAMAGE_LINES]
            record(actor, "point.damaged", target=point, details=details)
    return point


def mark_intact(point: RecoveryPoint, tier: str, *, actor: Any = SYSTEM_ACTOR) -> RecoveryPoint:
    """A full check of `tier` found the point whole: forget that tier's damage (repaired once no
    tier has any left)."""
    with transaction.atomic():
        point = RecoveryPoint.objects.select_for_update().select_related("vm").get(pk=point.pk)
        if not point.damaged:
            return point
        _forget(point, tier=tier, digests=None, actor=actor, how=f"a verification of the {tier} tier")
    return point


def _other_tier_chunks(point: RecoveryPoint, tier: str) -> list[dict[str, str]]:
    return [c for c in point.damaged_chunks if c.get("tier") != tier] if point.damaged else []


def _other_tier_damage(point: RecoveryPoint, tier: str) -> list[str]:
    return [line for line in point.damage if not line.startswith(f"{tier}: ")] if point.damaged else []


def _digests(chunks: Iterable[dict[str, str]]) -> set[tuple[str, str]]:
    return {(c["digest"], c.get("tier", LOCAL)) for c in chunks}


def _forget(
    point: RecoveryPoint, *, tier: str | None, digests: set[tuple[str, str]] | None, actor: Any, how: str
) -> bool:
    """Drop damage that is gone — a whole tier's (`tier`) or some chunks' (`digests`, (hex, tier)
    pairs); once none is left the point is repaired now. Call inside a transaction with the row
    locked. True when the point is repaired."""
    if tier is not None:
        keep = [c for c in point.damaged_chunks if c.get("tier", LOCAL) != tier]
    else:
        keep = [c for c in point.damaged_chunks if (c["digest"], c.get("tier", LOCAL)) not in (digests or set())]
    # Damage in a tier the point has left (pruned there) no longer stands between it and a restore.
    gone = {t for t in (LOCAL, VAULT) if not _still_held(point, t)}
    keep = [c for c in keep if c.get("tier", LOCAL) not in gone]
    lines_left = [line for line in _damage_left(point, keep, tier) if line.split(":", 1)[0] not in gone]
    repaired = not keep and not lines_left
    point.damaged_chunks = keep
    point.damaged = not repaired
    if repaired:
        point.repaired_at = timezone.now()  # `damage` stays: what was wrong, shown beside "repaired"
    else:
        point.damage = lines_left
    point.save(update_fields=["damaged", "damage", "damaged_chunks", "repaired_at"])
    if repaired:
        details = {"vm": point.vm.name, "how": how, "damage": point.damage[:10]}
        record(actor, "point.repaired", target=point, details=details)
    return repaired


def _damage_left(point: RecoveryPoint, keep: list[dict[str, str]], tier: str | None) -> list[str]:
    """The damage sentences still true. A whole-tier check clears every sentence of that tier; a
    chunk repair clears the sentences naming repaired chunks, never one about something else (an
    unreadable index), which only a verification of its tier can clear."""
    if tier is not None:
        return [line for line in point.damage if not line.startswith(f"{tier}: ")]
    recorded = {c["digest"] for c in point.damaged_chunks}
    still_bad = {c["digest"] for c in keep}

    def still_true(line: str) -> bool:
        named = {digest for digest in recorded if digest in line}
        return not named or bool(named & still_bad)

    return [line for line in point.damage if still_true(line)]


# Checking repairs -------------------------------------------------------------------------------


def recheck_damaged(
    digests: Iterable[str] | None = None, *, actor: Any = SYSTEM_ACTOR, how: str = "a repair"
) -> list[RecoveryPoint]:
    """Clear the damage of points whose damaged chunks are whole again (read back and hashed in
    their tier), with the time and an audit row. `digests` (hex) limits the check to the points
    that name one of them; None checks every damaged point. Returns the points now repaired."""
    wanted = set(digests) if digests is not None else None
    checker = _ChunkChecker()
    repaired = []
    for point in RecoveryPoint.objects.filter(damaged=True).select_related("vm").order_by("created"):
        entries = [c for c in point.damaged_chunks if wanted is None or c["digest"] in wanted]
        whole = checker.whole_chunks(point, entries)
        if not whole:
            continue
        with transaction.atomic():
            locked = RecoveryPoint.objects.select_for_update().select_related("vm").get(pk=point.pk)
            if locked.damaged and _forget(locked, tier=None, digests=whole, actor=actor, how=how):
                repaired.append(locked)
    return repaired


def note_read_repairs(source: engine.TieredStore, *, actor: Any = SYSTEM_ACTOR) -> list[RecoveryPoint]:
    """After a restore or a browse through `source`: the chunks its reads healed from the other tier
    may make damaged points whole; recheck those (returns the points now repaired)."""
    if not source.repairs:
        return []
    digests = {repair.digest for repair in source.repairs}
    return recheck_damaged(digests, actor=actor, how="a read that repaired it from the other tier")


class _ChunkChecker:
    """Reads chunks back from a tier and checks their hashes; each tier is opened once."""

    def __init__(self) -> None:
        self._sources: dict[str, Any] = {}

    def whole_chunks(self, point: RecoveryPoint, entries: list[dict[str, str]]) -> set[tuple[str, str]]:
        """(hex, tier) of the entries whose chunk reads back whole in its tier."""
        whole = set()
        for tier in {c.get("tier", LOCAL) for c in entries}:
            digests = {bytes.fromhex(c["digest"]) for c in entries if c.get("tier", LOCAL) == tier}
            whole |= {(digest.hex(), tier) for digest in self._whole_in(point, tier, digests)}
        return whole

    def _whole_in(self, point: RecoveryPoint, tier: str, digests: set[bytes]) -> set[bytes]:
        source = self._source(tier) if _still_held(point, tier) else None
        if source is None:
            return set()
        try:
            lengths = chunk_lengths(source.open_point(str(point.pk)), digests)
        except (engine.StoreError, engine.BackendError, OSError, KeyError):
            return set()
        whole = set()
        for digest, length in lengths.items():
            try:
                source.read_chunk(digest, length, verify=True)
            except (engine.StoreError, engine.BackendError, OSError):
                continue
            whole.add(digest)
        return whole

    def _source(self, tier: str) -> engine.Store | engine.RemoteVault | None:
        if tier not in self._sources:
            vault = vault_if_configured() if tier == VAULT else None
            self._sources[tier] = local_store() if tier == LOCAL else (vault.open() if vault else None)
        return self._sources[tier]


def _still_held(point: RecoveryPoint, tier: str) -> bool:
    return point.local if tier == LOCAL else point.vault_status == RecoveryPoint.VaultStatus.REPLICATED


def chunk_lengths(view: Any, digests: set[bytes]) -> dict[bytes, int]:
    """The plaintext length of each of `digests` that a point uses (every chunk is full size except
    a disk's last), found by searching each index's packed digest list once."""
    found: dict[bytes, int] = {}
    for key in view.disk_keys:
        index = view.index(key)
        for digest in digests - found.keys():
            start = 0
            while (at := index.digests.find(digest, start)) != -1:
                if at % DIGEST_SIZE == 0:
                    found[digest] = index.extent(at // DIGEST_SIZE)[1]
                    break
                start = at + 1
    return found


# Repairing --------------------------------------------------------------------------------------


@dataclass
class RepairOutcome:
    """What a repair did: chunks copied back into each tier, chunks it could not repair, and the
    points that are whole again or still damaged."""

    repaired_local: list[engine.ChunkNote] = field(default_factory=list)
    repaired_vault: list[engine.ChunkNote] = field(default_factory=list)
    unrepairable: list[engine.ChunkNote] = field(default_factory=list)
    points_repaired: list[RecoveryPoint] = field(default_factory=list)
    points_damaged: list[RecoveryPoint] = field(default_factory=list)
    vault_error: str = ""  # why nothing could be repaired this time (the vault is down), or ""

    def as_dict(self) -> dict[str, Any]:
        def notes(items: list[engine.ChunkNote]) -> list[dict[str, str]]:
            return [{"digest": n.digest, "sentence": n.sentence} for n in items[:MAX_DAMAGE_LINES]]

        return {
            "repaired_local": notes(self.repaired_local),
            "repaired_vault": notes(self.repaired_vault),
            "unrepairable": notes(self.unrepairable),
            "points_repaired": [str(p.pk) for p in self.points_repaired],
            "points_damaged": [str(p.pk) for p in self.points_damaged],
            "vault_error": self.vault_error,
        }

    def log_lines(self) -> list[tuple[str, str]]:
        """(level, sentence) for a job log or a terminal."""
        lines = [("info", f"Repaired in the local store: chunk {n.digest} — {n.sentence}") for n in self.repaired_local]
        lines += [("info", f"Repaired in the vault: chunk {n.digest} — {n.sentence}") for n in self.repaired_vault]
        lines += [("error", f"Cannot be repaired: chunk {n.digest} — {n.sentence}") for n in self.unrepairable]
        lines += [("info", f"{point_label(p)}: repaired.") for p in self.points_repaired]
        if self.vault_error:
            lines.append(("error", f"Nothing was repaired: {self.vault_error}."))
        return lines


def damage_remains(points: list[RecoveryPoint], outcome: RepairOutcome, tier: str | None = None) -> str:
    """The sentence a job fails with while points stay damaged after a repair: the VMs, and why."""
    vms = ", ".join(sorted({point.vm.name for point in points}))
    where = f" in the {tier} tier" if tier else ""
    sentence = f"{len(points)} damaged recovery point(s){where}; VMs affected: {vms}."
    if outcome.vault_error:
        return f"{sentence} Nothing was repaired: {outcome.vault_error}."
    if outcome.unrepairable:
        return f"{sentence} {len(outcome.unrepairable)} chunk(s) cannot be repaired: {NO_GOOD_COPY}."
    return f"{sentence} The damage is not in a chunk a repair can bring back: verify them again or back the VMs up."


def point_label(point: RecoveryPoint) -> str:
    return f"{point.vm.name} {timezone.localtime(point.created):%Y-%m-%d %H:%M}"


def recorded_damage() -> dict[str, set[str]]:
    """Hex digests of the damaged chunks recorded on points, per tier."""
    by_tier: dict[str, set[str]] = defaultdict(set)
    for chunks in RecoveryPoint.objects.filter(damaged=True).values_list("damaged_chunks", flat=True):
        for chunk in chunks:
            by_tier[chunk.get("tier", LOCAL)].add(chunk["digest"])
    return by_tier


def repair_damage(
    *, actor: Any = SYSTEM_ACTOR, vault_bad: Iterable[str] | None = None, requested: bool = False
) -> RepairOutcome:
    """Repair every bad chunk that has a good copy in the other tier — the local store's quarantined
    chunks and the local chunks recorded missing, and `vault_bad` (by default the vault chunks
    recorded on damaged points) — then recheck the damaged points. Audited when anything was
    repaired, and always when someone `requested` it (a nightly verify that finds nothing it can
    repair must not add a row every night)."""
    store, vault = local_store(), vault_if_configured()
    recorded = recorded_damage()
    if vault_bad is None:
        vault_bad = recorded.get(VAULT, set())
    try:
        bad_there = [bytes.fromhex(d) for d in vault_bad] if vault else []
        report = engine.repair_chunks(store, vault, vault_bad=bad_there)
    except (engine.BackendError, engine.StoreError) as exc:  # the vault is unreachable or its key wrong
        outcome = RepairOutcome(vault_error=f"the vault could not be used for repairs: {exc}")
    else:
        outcome = RepairOutcome(report.repaired_local, report.repaired_vault, report.unrepairable)
        _restore_missing(store, vault, recorded.get(LOCAL, set()), outcome)
    outcome.points_repaired = recheck_damaged(actor=actor, how="a repair from the other tier")
    outcome.points_damaged = list(RecoveryPoint.objects.filter(damaged=True).select_related("vm"))
    if requested or outcome.repaired_local or outcome.repaired_vault:
        with transaction.atomic():
            record(actor, "vault.repair", target_label="Recovery points", details=outcome.as_dict())
    return outcome


def _restore_missing(
    store: engine.Store, vault: engine.RemoteVault | None, recorded: set[str], outcome: RepairOutcome
) -> None:
    """Local chunks recorded on damaged points that are simply gone (deleted, not corrupt: nothing
    was quarantined, so the engine's repair does not know them): copy them back from the vault."""
    known = {note.digest for note in (*outcome.repaired_local, *outcome.unrepairable)}
    for hex_digest in sorted(recorded - known):
        digest = bytes.fromhex(hex_digest)
        if store.has_chunk(digest):
            continue
        if vault is None:
            sentence = f"missing locally and no vault is configured; {NEXT_BACKUP}"
            outcome.unrepairable.append(engine.ChunkNote(hex_digest, sentence))
            continue
        try:
            store.put_chunk_file(digest, vault.read_chunk_file(digest))
        except (engine.ChunkMissing, engine.ChunkCorrupt):
            outcome.unrepairable.append(engine.ChunkNote(hex_digest, f"missing locally; {NO_GOOD_COPY}"))
        except engine.BlobArchived:
            sentence = "missing locally; the vault's copy is in the Archive tier: rehydrate it, then repair again"
            outcome.unrepairable.append(engine.ChunkNote(hex_digest, sentence))
        else:
            outcome.repaired_local.append(engine.ChunkNote(hex_digest, "missing locally; copied back from the vault"))
