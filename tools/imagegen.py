"""Deterministic disk images for backup benchmarks: zero, random and text-like regions of a few MiB.

A real VM disk is a patchwork of never-written space (zeros), compressed or encrypted files (random)
and text, logs and binaries (compressible). The mix and the region sizes decide how much a backup tool
can skip, compress and deduplicate, so the benchmark pins them: same seed, same bytes.

    python tools/imagegen.py OUT.img [--size 1G] [--seed 1]

No Django and nothing outside the standard library: the benchmark runs it on a bare machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
KINDS = ("zero", "random", "text")


@dataclass(frozen=True)
class Region:
    offset: int
    length: int
    kind: str


def plan(
    size: int, *, seed: int, weights: tuple[float, float, float] = (0.3, 0.4, 0.3), max_mib: int = 8
) -> list[Region]:
    """Regions of 1..max_mib MiB (MiB-aligned, as file systems allocate) covering `size` bytes.

    Every kind draws its lengths from the same distribution, so picking kinds with probability
    `weights` gives byte shares near `weights` (the seed-1 GiB image: 30% / 37% / 33%).
    """
    rng = random.Random(seed)
    regions: list[Region] = []
    offset = 0
    while offset < size:
        kind = rng.choices(KINDS, weights=weights)[0]
        length = min(rng.randint(1, max_mib) * MIB, size - offset)
        if regions and regions[-1].kind == kind:  # merge, so "region" means a run of one kind
            last = regions.pop()
            regions.append(Region(last.offset, last.length + length, kind))
        else:
            regions.append(Region(offset, length, kind))
        offset += length
    return regions


class TextMaker:
    """Log- and prose-like text: log line headers, and Zipf-distributed words of a made-up language
    in short phrases with numbers and line breaks. Calibrated on this machine to what
    /work/shared/VERIFIED.md calls text-like: zstd level 1 packs it about 2.7:1 at ~0.25 GB/s
    (real source code and changelogs here: 3.4-4.6:1 at ~0.3 GB/s, so this is the harder case)."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        syllables = ["".join(p) for p in itertools.product("bcdfghklmnprstvw", "aeiou")]
        syllables += ["the", "and", "ing", "ion", "er", "st", "re"]
        words = ("".join(rng.choices(syllables, k=rng.choice((1, 1, 2, 2, 2, 3, 3, 4)))) for _ in range(6000))
        vocab = list(dict.fromkeys(words))[:3000]
        cum_weights = list(itertools.accumulate(1 / (rank + 1) ** 1.1 for rank in range(len(vocab))))
        levels = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
        services = ["".join(rng.choices(syllables, k=2)) for _ in range(40)]
        seps = [" "] * 10 + [", ", ". ", ".\n", "\n"]
        phrases = []
        for _ in range(65536):
            if rng.random() < 0.3:
                stamp = f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
                phrase = f"\n{stamp}:{rng.randint(0, 59):02d} {rng.choice(levels)} {rng.choice(services)}"
                phrase += f"[{rng.randint(100, 9999)}]: "
            else:
                chosen = rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(1, 4))
                if rng.random() < 0.1:
                    chosen.append(str(rng.randint(0, 99999)))
                phrase = " ".join(chosen) + rng.choice(seps)
            phrases.append(phrase.encode())
        self._phrases = phrases
        self._rng = rng

    def make(self, length: int) -> bytes:
        parts: list[bytes] = []
        have = 0
        while have < length:
            # 16-bit random indices straight from randbytes: a C-speed loop instead of choices().
            picks = memoryview(self._rng.randbytes(2 * 65536)).cast("H")
            block = b"".join(map(self._phrases.__getitem__, picks))
            parts.append(block)
            have += len(block)
        return b"".join(parts)[:length]


def generate(path: str | os.PathLike[str], size: int = GIB, *, seed: int = 1) -> list[Region]:
    """Write the image (zeros written out, not left as holes, like a thick disk) and fsync it."""
    regions = plan(size, seed=seed)
    rng = random.Random(seed + 1)
    text = TextMaker(seed + 2)
    zero = bytes(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for region in regions:
            for start in range(0, region.length, MIB):
                n = min(MIB, region.length - start)
                if region.kind == "zero":
                    data = zero[:n]
                elif region.kind == "random":
                    data = rng.randbytes(n)
                else:
                    data = text.make(n)
                os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return regions


def mutate(
    path: str | os.PathLike[str], *, count: int = 10, length: int = MIB, seed: int = 2, align: int = 64 * 1024
) -> list[tuple[int, int]]:
    """Overwrite `count` random regions with random data, like a day of writes on a quiet VM; returns
    the changed areas as vSphere changed block tracking would report them (offset, length)."""
    size = os.path.getsize(path)
    rng = random.Random(seed)
    areas = []
    fd = os.open(path, os.O_WRONLY)
    try:
        for _ in range(count):
            offset = rng.randrange(0, (size - length) // align) * align
            os.pwrite(fd, rng.randbytes(length), offset)
            areas.append((offset, length))
        os.fsync(fd)
    finally:
        os.close(fd)
    return sorted(areas)


def shares(regions: list[Region]) -> dict[str, float]:
    total = sum(r.length for r in regions) or 1
    return {kind: sum(r.length for r in regions if r.kind == kind) / total for kind in KINDS}


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": GIB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=parse_size, default=GIB)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    regions = generate(args.out, args.size, seed=args.seed)
    print(
        f"{args.out}: {args.size} bytes, {len(regions)} regions, "
        + ", ".join(f"{kind} {share:.0%}" for kind, share in shares(regions).items())
    )


if __name__ == "__main__":
    main()
