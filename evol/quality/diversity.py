"""How diverse a set of instructions is: the mean similarity of sampled texts to their nearest neighbour in the set."""

from __future__ import annotations

import random
from typing import Any

from evol.text import normalize

DIVERSITY_SAMPLE = 100  # rows whose nearest neighbour is looked for: ~2 s per 25k-row set on 2 shared cores


def diversity(texts: list[str], sample: int = DIVERSITY_SAMPLE, seed: int = 0) -> dict[str, Any] | None:
    """Mean similarity (rapidfuzz ratio, 0-1) of sampled texts to their nearest other text of the set: lower is more diverse."""
    import numpy as np  # here: an export that chooses no rows by score never needs it
    from rapidfuzz import fuzz, process

    if len(texts) < 2:
        return None
    norms = [normalize(t) for t in texts]
    picks = sorted(random.Random(seed).sample(range(len(norms)), min(sample, len(norms))))
    sims = process.cdist([norms[i] for i in picks], norms, scorer=fuzz.ratio, dtype=np.uint8, workers=-1)
    sims[np.arange(len(picks)), picks] = 0  # a text is not its own neighbour
    nearest = sims.max(axis=1) / 100
    return {"mean_nearest_similarity": round(float(nearest.mean()), 4), "sampled": len(picks)}
