"""Online feature reads for the SDK's hot path, straight from the layout Feast's Redis store writes.

`store.get_online_features` costs 5-10x a raw Redis read here: it resolves the service, builds
protos per entity row, issues one HMGET per feature view and entity, and assembles a response proto.
This reader keeps Feast's definitions (the registered FeatureService, its views, the on-demand
view's own function) and Feast's storage format (entity-key serialization, murmur3 field names,
`_ts:<view>` timestamps), and reads each asset's hash once with a single HMGET of every field the
service needs. It returns what `get_online_features(...).to_dict()` returns, value for value
(tests/integration/test_online.py compares them); Feast stays the writer (`feast materialize`).
A Redis Cluster online store (`redis_type: redis_cluster`) holds the same keys spread over its
masters; the reader then uses redis-py's cluster client (tests/integration/test_redis_cluster.py).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from warehouse.store import feature_service, redis_refused

_DOUBLE = 0x29  # Value.double_val: field 5, wire type 1 (8 bytes little endian)
_STRING = 0x12  # Value.string_val: field 2, wire type 2 (length-delimited)
_unpack_double = struct.Struct("<d").unpack_from
# Redis refused the credentials (wrong password, disabled user) or a command the ACL user lacks: not an
# outage to fall back from, one error naming the user (warehouse.store.redis_refused).
REFUSED = (redis.AuthenticationError, redis.exceptions.NoPermissionError)


@dataclass(frozen=True)
class _View:
    name: str
    features: tuple[str, ...]  # requested by the service
    inputs: tuple[str, ...]  # read only to feed an on-demand view


@dataclass(frozen=True)
class _OnDemand:
    name: str
    features: tuple[str, ...]  # requested outputs
    udf: object  # the registered python-mode function: dict of columns -> dict of columns
    sources: tuple[tuple[str, str], ...]  # (view, feature) it reads
    request: tuple[str, ...]  # request-data fields it reads


@dataclass(frozen=True)
class Plan:
    """How to read one feature service: the HMGET field list and how to decode it."""

    views: tuple[_View, ...]
    on_demand: tuple[_OnDemand, ...]
    fields: tuple[bytes | str, ...]  # HMGET fields, in `slots` order, then one `_ts:<view>` per view
    slots: tuple[tuple[str, str], ...]  # (view, feature) per feature field
    output: tuple[str, ...]  # the service's feature names, in service order

    @property
    def request(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for odfv in self.on_demand for f in odfv.request))


def _decode(raw: bytes | None):
    """A Feast ValueProto as the Python value Feast's to_dict() gives (None when absent/empty)."""
    if not raw:
        return None
    if raw[0] == _DOUBLE and len(raw) == 9:
        return _unpack_double(raw, 1)[0]
    if raw[0] == _STRING and len(raw) == raw[1] + 2 and raw[1] < 0x80:  # short string, one-byte length
        return raw[2:].decode()
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(Value.FromString(raw))


def _decode_ts(raw: bytes | None) -> int:
    """Event time in whole epoch seconds, 0 when absent (what Feast's to_dict reports)."""
    if not raw:
        return 0
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp.FromString(raw).seconds


SOCKET_TIMEOUT_S = 5.0  # online reads take well under a millisecond; a pipelined read of 4,096 keys, tens of ms


def redis_client(address):
    """A redis-py client for a `core.settings.RedisAddress`: `RedisCluster` for a cluster (it learns the
    slot map from the listed nodes and routes each key, and its pipelines, to the master owning the
    key's slot), else `Redis`. A cluster that cannot be reached raises redis.ConnectionError, like a
    single node, so callers handle one error family."""
    if not address.cluster:
        # One immediate retry: redis-py's default (three, backing off from 1 s) held every call ~7 s while
        # Redis was down, before the forecast fell back to the offline store. A Redis that accepts but
        # does not answer is an error after SOCKET_TIMEOUT_S, not a call (or the API's event loop) held.
        return redis.Redis(host=address.host, port=address.port, db=address.db, username=address.username,
                           password=address.password or None, retry=Retry(NoBackoff(), 1),
                           socket_connect_timeout=SOCKET_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S)
    from redis.cluster import ClusterNode, RedisCluster

    try:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in address.nodes],
                            username=address.username, password=address.password or None,
                            socket_connect_timeout=SOCKET_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S)
    except RedisClusterException as e:
        nodes = ",".join(f"{h}:{p}" for h, p in address.nodes)
        raise redis.ConnectionError(f"Redis Cluster {nodes} unreachable: {e}") from e


class OnlineReader:
    """Reads feature services for (tenant, asset) rows; one per FeatureStore. Works against one Redis
    or a Redis Cluster (`redis_type: redis_cluster`): keys are the same, only the client differs."""

    def __init__(self, store, max_keys: int = 4096):
        from feast.infra.online_stores.helpers import _mmh3

        from core.settings import parse_redis_connection_string

        cfg = store.config
        redis_type = getattr(cfg.online_store, "redis_type", "redis")
        self.address = parse_redis_connection_string(str(cfg.online_store.connection_string),
                                                     str(getattr(redis_type, "value", redis_type)))
        self._redis = None  # connected on first use (a cluster client connects when built)
        self.store = store
        self._project = cfg.project.encode()
        self._version = cfg.entity_key_serialization_version
        self._mmh3 = _mmh3
        self._plans: dict[str, tuple[float, object, Plan]] = {}
        self._keys: dict[tuple[str, str], bytes] = {}
        self._max_keys = max_keys

    @property
    def redis(self):
        """The redis-py client (Redis, or RedisCluster whose pipelines split commands per master)."""
        if self._redis is None:
            self._redis = redis_client(self.address)
        return self._redis

    # ------------------------------------------------------------------ plan
    def plan(self, service: str) -> Plan:
        fs = feature_service(self.store, service)  # cached for the registry's TTL
        hit = self._plans.get(service)
        if hit is not None and hit[1] is fs:
            return hit[2]
        plan = self._build(fs)
        self._plans[service] = (time.monotonic(), fs, plan)
        return plan

    def _build(self, fs) -> Plan:
        on_demand = {v.name: v for v in self.store.list_on_demand_feature_views(allow_cache=True)}
        requested: dict[str, list[str]] = {}
        odfvs, output = [], []
        for projection in fs.feature_view_projections:
            names = [f.name for f in projection.features]
            output += names
            if projection.name in on_demand:
                odfv = on_demand[projection.name]
                sources = []
                for src in odfv.source_feature_view_projections.values():
                    requested.setdefault(src.name, [])
                    sources += [(src.name, f.name) for f in src.features]
                request = [f.name for rs in odfv.source_request_sources.values() for f in rs.schema]
                odfvs.append(_OnDemand(odfv.name, tuple(names), odfv.feature_transformation.udf,
                                       tuple(sources), tuple(request)))
                for view, feature in sources:
                    requested.setdefault(view, [])
                    requested[view + "\0inputs"] = [*requested.get(view + "\0inputs", []), feature]
            else:
                requested.setdefault(projection.name, []).extend(names)
        views = []
        for name, feats in requested.items():
            if "\0" in name:
                continue
            extra = [f for f in requested.get(name + "\0inputs", []) if f not in feats]
            views.append(_View(name, tuple(feats), tuple(dict.fromkeys(extra))))
        slots = [(v.name, f) for v in views for f in (*v.features, *v.inputs)]
        fields = [self._mmh3(f"{v}:{f}") for v, f in slots] + [f"_ts:{v.name}" for v in views]
        return Plan(tuple(views), tuple(odfvs), tuple(fields), tuple(slots), tuple(output))

    # ------------------------------------------------------------------ read
    def _key(self, tenant: str, asset: str) -> bytes:
        key = self._keys.get((tenant, asset))
        if key is None:
            from feast.infra.key_encoding_utils import serialize_entity_key
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            proto = EntityKey(join_keys=["tenant_id", "asset_id"],
                              entity_values=[Value(string_val=tenant), Value(string_val=asset)])
            key = serialize_entity_key(proto, entity_key_serialization_version=self._version) + self._project
            if len(self._keys) >= self._max_keys:
                self._keys.clear()
            self._keys[(tenant, asset)] = key
        return key

    def fetch(self, plan: Plan, tenant: str, assets: list[str]) -> list[tuple[dict, dict]]:
        """Per distinct asset, in order: ({(view, feature): value}, {view: event time, epoch s, 0 if absent})."""
        distinct = list(dict.fromkeys(assets))
        fields = plan.fields
        try:
            if len(distinct) == 1:
                replies = [self.redis.hmget(self._key(tenant, distinct[0]), fields)]
            else:  # on a cluster, a ClusterPipeline: one round trip per master holding some of the keys
                with self.redis.pipeline(transaction=False) as pipe:
                    for a in distinct:
                        pipe.hmget(self._key(tenant, a), fields)
                    replies = pipe.execute()
        except REFUSED as e:
            raise redis_refused(e, self.address) from e
        except RedisClusterException as e:  # cluster-level failure (slots uncovered, no node reachable)
            raise redis.ConnectionError(f"Redis Cluster read failed: {e}") from e
        n = len(plan.slots)
        out = []
        for reply in replies:
            values = {slot: _decode(raw) for slot, raw in zip(plan.slots, reply, strict=False)}
            stamps = {v.name: _decode_ts(raw) for v, raw in zip(plan.views, reply[n:], strict=True)}
            out.append((values, stamps))
        return out

    def event_times(self, pairs: list[tuple[str, str]], view: str) -> list[int]:
        """Epoch seconds of `view`'s online row per (tenant, asset) (0 when absent): one pipelined HMGET."""
        if not pairs:
            return []
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for tenant, asset in pairs:
                    pipe.hmget(self._key(tenant, asset), [f"_ts:{view}"])
                return [_decode_ts(reply[0]) for reply in pipe.execute()]
        except REFUSED as e:
            raise redis_refused(e, self.address) from e

    def read(self, service: str, tenant: str, assets: list[str], request: dict[str, list] | None = None,
             event_timestamps: bool = False) -> dict[str, list]:
        """Columns like `get_online_features(features=service, entity_rows=rows).to_dict()` for rows
        (tenant, assets[i], request[field][i]). With event_timestamps, each batch view's feature also
        gets `<feature>__ts` as Feast's include_event_timestamps does (epoch seconds; 0 when absent and for
        entity and on-demand columns)."""
        plan = self.plan(service)
        fetched = dict(zip(dict.fromkeys(assets), self.fetch(plan, tenant, assets), strict=True))
        rows = [fetched[a] for a in assets]
        cols: dict[str, list] = {"tenant_id": [tenant] * len(assets), "asset_id": list(assets)}
        computed: dict[str, list] = {}
        for odfv in plan.on_demand:
            inputs = {}
            for view, feature in odfv.sources:  # short and full names, as Feast passes them
                inputs[feature] = inputs[f"{view}__{feature}"] = [values.get((view, feature)) for values, _ in rows]
            # request data: what the caller passed, one value per row (Feast passes it as given)
            for f in odfv.request:
                given = (request or {}).get(f)
                if given is None:
                    from core.errors import FeaturesUnavailableError

                    raise FeaturesUnavailableError(f"on-demand view {odfv.name!r} needs request data {f!r}")
                if len(given) != len(assets):
                    from core.errors import FeaturesUnavailableError

                    raise FeaturesUnavailableError(f"request data {f!r} has {len(given)} values for {len(assets)} rows")
                inputs[f] = list(given)
            result = odfv.udf(inputs)
            for f in odfv.features:
                computed[f] = list(result[f])
        for view in plan.views:
            for f in view.features:
                cols[f] = [values.get((view.name, f)) for values, _ in rows]
                if event_timestamps:
                    cols[f + "__ts"] = [stamps[view.name] for _, stamps in rows]
        zeros = [0] * len(assets)
        ordered: dict[str, list] = {}
        for name in ("tenant_id", "asset_id", *plan.output):
            ordered[name] = computed[name] if name in computed else cols[name]
            if event_timestamps:
                ordered[name + "__ts"] = cols.get(name + "__ts", zeros)
        return ordered



def online_reader(store) -> OnlineReader:
    """The reader of a FeatureStore (one per store, made on first use)."""
    reader = getattr(store, "_ems_online_reader", None)
    if reader is None:
        reader = OnlineReader(store)
        store._ems_online_reader = reader
    return reader
