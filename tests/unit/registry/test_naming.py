"""Id rules shared by ingest, registry and inference."""

import pytest

from core.names import InvalidIdError, check_asset_id, check_tenant_id


@pytest.mark.parametrize("tenant", ["demo", "acme-grid", "t_1", "a" * 63])
def test_valid_tenant_ids(tenant):
    assert check_tenant_id(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", "Demo", "a.b", "a b", "-x", "a" * 64, "x'; DROP TABLE readings; --", 7])
def test_invalid_tenant_ids_name_the_value_and_the_rule(tenant):
    with pytest.raises(InvalidIdError, match=r"tenant id .* is invalid: use 1-63 lowercase"):
        check_tenant_id(tenant)


def test_asset_ids_allow_meter_style_names_and_refuse_quotes():
    assert check_asset_id("MTR-0042.a:1") == "MTR-0042.a:1"
    with pytest.raises(InvalidIdError, match="site id \"it's\" is invalid"):
        check_asset_id("it's", "site")


def test_model_ids_parse_and_malformed_ones_name_the_value():
    from core.names import InvalidModelIdError, parse_model_id, registered_name

    ref = parse_model_id("demo:load_forecaster:12")
    assert (ref.tenant, ref.name, ref.version, ref.id) == ("demo", "load_forecaster", 12, "demo:load_forecaster:12")
    assert registered_name(ref.tenant, ref.name) == "demo.load_forecaster"
    for bad in ("demo:x", "demo:x:0", "demo:x:v1", "Demo:x:1", "demo.x.1", "demo:x:1:2", ""):
        with pytest.raises(InvalidModelIdError, match=f"model id {bad!r} is malformed: use tenant:name:version"):
            parse_model_id(bad)


def test_model_names_follow_the_tenant_rule():
    from core.names import InvalidModelIdError, check_model_name

    assert check_model_name("load_forecaster") == "load_forecaster"
    with pytest.raises(InvalidModelIdError, match="model name 'Load.Model' is invalid"):
        check_model_name("Load.Model")
