"""Talking to models: the OpenAI-compatible client and its error mapping, endpoint, rate limits, call cache, Batch API, the embedded model, usage and prices."""
