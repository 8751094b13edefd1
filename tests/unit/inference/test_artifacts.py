"""Where a model version's files are in S3, and how a listing is named (no services)."""

import pytest

from inference.artifacts import S3Object, digest, s3_location

DEST = "s3://ems-artifacts/mlflow"


@pytest.mark.parametrize(("uri", "expected"), [
    ("mlflow-artifacts:/1/models/m-abc/artifacts", ("ems-artifacts", "mlflow/1/models/m-abc/artifacts/")),
    ("mlflow-artifacts://127.0.0.1:15050/1/models/m-abc/artifacts/",
     ("ems-artifacts", "mlflow/1/models/m-abc/artifacts/")),
    ("s3://other-bucket/a/b", ("other-bucket", "a/b/")),
])
def test_artifact_uris_map_to_a_bucket_and_a_prefix_ending_in_a_slash(uri, expected):
    assert s3_location(uri, DEST) == expected


def test_artifacts_served_from_the_bucket_root_have_no_base_folder():
    assert s3_location("mlflow-artifacts:/2/x", "s3://bucket") == ("bucket", "2/x/")


@pytest.mark.parametrize("uri", ["models:/m-abc", "runs:/r1/model", "file:///tmp/model", "/tmp/model",
                                 "mlflow-artifacts:/"])
def test_uris_outside_s3_are_not_fetched_directly(uri):
    assert s3_location(uri, DEST) is None


def test_proxied_artifacts_on_a_non_s3_destination_are_not_fetched_directly():
    assert s3_location("mlflow-artifacts:/1/x", "file:///srv/mlflow") is None


def test_digest_names_content_not_order_and_changes_with_any_object():
    a = S3Object("p/MLmodel", "MLmodel", 10, '"e1"')
    b = S3Object("p/artifacts/p10.txt", "artifacts/p10.txt", 99, '"e2"')
    assert digest([a, b]) == digest([b, a]) and len(digest([a])) == 16
    assert digest([a, b]) != digest([a, S3Object(b.key, b.relative, 99, '"e3"')])
    assert digest([a, b]) != digest([a, S3Object(b.key, b.relative, 98, '"e2"')])
