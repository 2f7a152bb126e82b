"""The export formats: one row each, with the file it writes and what the dataset card says of it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # of each split's file (hf's are Parquet shards in the Hub's layout)
    note: str  # the dataset card's sentence about the files
    pairs: bool = False  # preference pairs from ranked candidates, not instruction/output rows


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "alpaca",
            ".json",
            'Each file is a JSON array of `{"instruction", "output"}` objects, the shape of the original Alpaca and '
            'WizardLM releases; a conversation adds `"system"` and `"history"` (its earlier `[user, assistant]` pairs, '
            "as LLaMA-Factory reads them).",
        ),
        Format(
            "jsonl",
            ".jsonl",
            "One JSON object per line: `instruction`, `output`, and the lineage `id`, `seed_id`, `round`, `operation`, "
            "`run_id` (and `complexity`, `quality` when the run was scored, `history` when it holds conversations).",
        ),
        Format(
            "sharegpt",
            ".json",
            'Each file is a JSON array of `{"id", "conversations": [{"from": "human"}, {"from": "gpt"}]}` (ShareGPT), '
            "every turn of a conversation in order.",
        ),
        Format(
            "openai-chat",
            ".jsonl",
            'One `{"messages": [...]}` object per line, every turn of a conversation: the chat fine-tuning format of '
            "OpenAI and most trainers.",
        ),
        Format(
            "vicuna",
            ".jsonl",
            'One `{"id", "text"}` object per line: the conversation in the Vicuna v1.1 prompt format that WizardLM\'s '
            'chat models were trained on ("A chat between a curious user and an artificial intelligence assistant. '
            '… USER: … ASSISTANT: …</s>").',
        ),
        Format(
            "parquet",
            ".parquet",
            "Parquet tables with columns `instruction`, `output`, `id`, `seed_id`, `round`, `operation`, `run_id`.",
        ),
        Format(
            "hf",
            ".parquet",
            'Parquet shards in the Hugging Face Hub layout: `datasets.load_dataset("<this folder>")` reads them; upload '
            "the folder as is.",
        ),
        Format(
            "dpo",
            ".jsonl",
            'One `{"prompt", "chosen", "rejected"}` object per line, all strings: the standard preference format '
            "that TRL's DPOTrainer reads; a conversation's rows are left out (use `preference-chat`).",
            pairs=True,
        ),
        Format(
            "preference-chat",
            ".jsonl",
            'One `{"prompt", "chosen", "rejected"}` object per line, each a list of chat messages (the prompt every '
            "turn up to the instruction, the answers assistant messages): TRL's conversational preference format.",
            pairs=True,
        ),
    )
}
NAMES: tuple[str, ...] = tuple(FORMATS)
