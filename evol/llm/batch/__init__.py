"""The OpenAI Batch API behind the chat protocol: the queue of calls, the batch files, and the ledger of submissions."""
