"""evol.evolve.run helpers that are not about a whole run: the collector setting a run works under."""

import gc

import pytest

from evol.evolve.run import fewer_gc_pauses


def test_a_run_collects_less_often_and_gives_the_setting_back_even_on_error():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_gc_pauses():
        assert gc.get_threshold() == (50_000, *before[1:])
        raise RuntimeError("a run that stops")
    assert gc.get_threshold() == before
