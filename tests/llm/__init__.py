"""Tests of evol.llm: the client and its error mapping, the call cache, rate limits, the Batch API, the embedded model."""
