"""The local Redis Cluster helper's pure parts: slot split, node list, Feast config block."""

from __future__ import annotations

import pytest

from core.settings import parse_redis_connection_string
from stack.redis_cluster import CLUSTER_SLOTS, LocalRedisCluster, slot_ranges


def test_three_masters_get_redis_clis_split():
    assert slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]


@pytest.mark.parametrize("masters", [1, 2, 3, 5, 7, 100])
def test_slot_ranges_cover_every_slot_once_in_order(masters):
    ranges = slot_ranges(masters)
    assert len(ranges) == masters and ranges[0][0] == 0 and ranges[-1][1] == CLUSTER_SLOTS - 1
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in zip(ranges, ranges[1:], strict=False))
    sizes = [last - first + 1 for first, last in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("masters", [0, 101, -1, 2.0, "3"])
def test_slot_ranges_refuse_a_bad_master_count(masters):
    with pytest.raises(ValueError, match=r"1\.\.100"):
        slot_ranges(masters)


def test_cluster_describes_itself_in_feasts_format(tmp_path):
    cluster = LocalRedisCluster([27001, 27002, 27003], tmp_path)
    assert cluster.connection_string == "127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003"
    block = cluster.online_store_config()
    assert block == {"type": "redis", "redis_type": "redis_cluster", "connection_string": cluster.connection_string}
    address = parse_redis_connection_string(block["connection_string"], block["redis_type"])
    assert address.cluster and list(address.nodes) == cluster.nodes


@pytest.mark.parametrize("ports", [[], [27001, 27001], [60000], [0], ["27001"]])
def test_cluster_refuses_bad_ports(tmp_path, ports):
    with pytest.raises(ValueError, match="ports="):
        LocalRedisCluster(ports, tmp_path)
