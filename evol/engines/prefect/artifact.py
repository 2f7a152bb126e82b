"""The summary a run leaves in its flow run's Artifacts tab."""

from __future__ import annotations

from prefect.artifacts import acreate_markdown_artifact

from evol.evolve.rounds import RunState
from evol.rundir.manifest import Chunks, Manifest, Tokens


async def run_summary(manifest: Manifest, state: RunState) -> None:
    """A summary in the flow run's Artifacts tab: counts by round, by stage and rejection reason, calls."""
    c, chunks = manifest.counts, manifest.chunks or Chunks()
    lines = [
        f"# evol run `{manifest.run_id}`: {manifest.status}",
        "",
        f"{c.dataset_rows} dataset rows in `{manifest.out}` from {c.seeds} seeds "
        f"({c.seeds_skipped} skipped), {c.rounds_done} rounds; "
        f"chunks run {chunks.run}, restored from checkpoints {chunks.restored}.",
        "",
        "| round | attempts | kept | eliminated | duplicate | failed |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in manifest.by_round.items():
        lines.append(f"| {n} | {r.attempts} | {r.kept} | {r.eliminated} | {r.duplicate} | {r.failed} |")
    by_reason = state.totals.by_reason
    lines += ["", "| stage | kind | rule | count |", "|---|---|---|---|"]
    lines += [f"| {s} | {k} | {rule} | {n} |" for (s, k, rule), n in sorted(by_reason.items())] or ["| - | - | - | 0 |"]
    usage = manifest.usage
    lines += ["", "| stage | calls | from cache | prompt tokens | completion tokens |", "|---|---|---|---|---|"]
    for stage, calls in sorted(usage.calls.items()):
        t = usage.tokens_by_stage.get(stage, Tokens())
        lines.append(
            f"| {stage} | {calls} | {usage.calls_from_cache.get(stage, 0)} | {t.prompt_tokens} | {t.completion_tokens} |"
        )
    if manifest.reason:
        lines += ["", f"Stopped: {manifest.reason}"]
    await acreate_markdown_artifact(
        markdown="\n".join(lines) + "\n", key="evol-run-summary", description=f"evol run {manifest.run_id}"
    )
