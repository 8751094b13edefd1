"""`ems bench --only`: the named row groups in run order, plus what they need."""

import pytest

from bench.run import select

GROUPS = [(name, None) for name in ("startup", "ingest", "materialize", "online", "serving", "http", "model_load",
                                     "pit", "cycle")]


def names(only):
    return [g for g, _ in select(GROUPS, only)]


def test_groups_that_read_the_online_store_bring_materialize_ahead_of_them():
    assert names(None) == [g for g, _ in GROUPS]
    assert names(["serving", "model_load"]) == ["materialize", "serving", "model_load"]
    assert names(["online"]) == ["materialize", "online"]
    assert names(["http"]) == ["materialize", "http"]
    assert names(["pit", "startup"]) == ["startup", "pit"]
    assert names(["cycle"]) == ["cycle"]  # its own tenants, checked in Redis by the group itself


def test_an_unknown_group_is_named_with_the_choices():
    with pytest.raises(ValueError, match="unknown bench group\\(s\\) servng; choose from startup, ingest"):
        select(GROUPS, ["servng"])
