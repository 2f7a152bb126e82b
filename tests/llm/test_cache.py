import asyncio
import contextlib
import sqlite3

from evol.config import Sampling
from evol.llm.cache import CachedChat, CallCache, call_key
from evol.models import Completion, Usage

from ..fakes import FakeChat

S = Sampling()
MSG = [{"role": "user", "content": "hi"}]


def test_key_depends_on_every_part_of_the_call():
    base = call_key("e", "m", MSG, S, "a")
    assert base == call_key("e", "m", [{"content": "hi", "role": "user"}], S, "a")
    others = [
        call_key("e2", "m", MSG, S, "a"),
        call_key("e", "m2", MSG, S, "a"),
        call_key("e", "m", [{"role": "user", "content": "ho"}], S, "a"),
        call_key("e", "m", MSG, Sampling(temperature=0.5), "a"),
        call_key("e", "m", MSG, S, "b"),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_answers_survive_a_new_process_and_are_not_paid_again(tmp_path):
    path = tmp_path / "calls.sqlite"
    fake = FakeChat(lambda p, s: f"answer to {p}")

    async def ask(chat, sample):
        return await chat.complete(MSG, model="m", sampling=S, sample=sample)

    chat = CachedChat(fake, CallCache(path))
    first = asyncio.run(ask(chat, "a"))
    assert not first.cached and len(fake.calls) == 1
    chat.cache.close()
    # a fresh cache object on the same file, as after a crash and restart
    again = CachedChat(fake, CallCache(path))
    hit = asyncio.run(ask(again, "a"))
    assert hit.cached and hit.text == first.text and hit.usage == first.usage
    assert len(fake.calls) == 1 and again.hits == 1
    asyncio.run(ask(again, "b"))  # another sample is another call
    assert len(fake.calls) == 2


def test_failed_calls_are_not_cached(tmp_path):
    fake = FakeChat(lambda p, s: RuntimeError("boom"))
    chat = CachedChat(fake, CallCache(tmp_path / "c.sqlite"))
    for _ in range(2):
        with contextlib.suppress(RuntimeError):
            asyncio.run(chat.complete(MSG, model="m", sampling=S, sample="a"))
    assert len(fake.calls) == 2 and len(chat.cache) == 0


def test_wal_mode_and_committed_on_put(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    cache.put(b"k" * 20, Completion(text="t", finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=2)))
    # another connection sees it at once: it was committed, not held in a transaction
    other = sqlite3.connect(tmp_path / "c.sqlite")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT count(*) FROM calls").fetchone()[0] == 1
