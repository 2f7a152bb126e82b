"""Deterministic filler words for the scripted models of the tests and the benchmarks."""

from __future__ import annotations

import hashlib

VOCAB = [
    "river",
    "lantern",
    "cobalt",
    "meadow",
    "quartz",
    "violin",
    "harbor",
    "ember",
    "falcon",
    "orchard",
    "granite",
    "saffron",
    "tundra",
    "compass",
    "velvet",
    "glacier",
    "bramble",
    "cinder",
    "lagoon",
    "mosaic",
    "nectar",
    "obsidian",
    "pylon",
    "quiver",
    "rampart",
]


def filler(key: str, n_chars: int) -> str:
    """Deterministic words, different for every key, at least ``n_chars`` long."""
    out: list[str] = []
    i = 0
    while sum(len(w) + 1 for w in out) < max(n_chars, 60):
        h = hashlib.sha256(f"{key}:{i}".encode()).digest()
        out.append(VOCAB[h[0] % len(VOCAB)] + VOCAB[h[1] % len(VOCAB)])
        i += 1
    return " ".join(out)
