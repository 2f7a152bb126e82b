"""Unit vectors for semantic dedup, from an OpenAI-compatible ``/v1/embeddings`` endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np

from evol.errors import BackendError, FatalBackendError


class Embedder:
    """Unit vectors from an OpenAI-compatible ``/v1/embeddings`` endpoint, ``batch`` texts per request."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60, batch: int = 256):
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model, self.api_key, self.timeout, self.batch = model, api_key, timeout, batch

    def __call__(self, texts: list[str]) -> np.ndarray:
        rows = [
            vec
            for start in range(0, len(texts), self.batch)
            for vec in self._request(texts[start : start + self.batch])
        ]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)

    def _request(self, texts: list[str]) -> list[list[float]]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = json.dumps({"model": self.model, "input": texts}).encode()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.loads(response.read())["data"]
            return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
        except urllib.error.HTTPError as exc:
            raise BackendError(
                f"The embeddings endpoint {self.url} answered HTTP {exc.code}; check the URL and model.",
                status=exc.code,
            ) from None
        except urllib.error.URLError as exc:
            raise FatalBackendError(f"Cannot reach the embeddings endpoint {self.url} ({exc.reason}).") from None
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"The embeddings endpoint {self.url} sent no list of embeddings in 'data'.") from None
