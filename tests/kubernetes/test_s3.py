"""The S3 artifact repository against a real S3 endpoint (moto's server), its ConfigMap format, and the
env that carries it into a step pod."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ExecutorError, ProviderError, SpecError, UnsupportedError
from engine.runtime.artifacts import load_input, pack_output
from engine.runtime.s3 import (
    ENV_ACCESS_KEY,
    ENV_REPOSITORY,
    ENV_SECRET_KEY,
    ArtifactRepositoryConfig,
    S3Config,
    S3Repository,
    SecretKeyRef,
    executor_env,
    parse_repository,
    parse_repository_configmap,
    repository_from_env,
)
from tests.s3server import BUCKET, MotoS3, moto_server, s3

__all__ = ["moto_server", "s3"]  # the fixtures, for pytest


def repo_for(s3: MotoS3, **changes: Any) -> S3Repository:
    return S3Repository(s3.config(**changes), s3.credentials)


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# ============================================================================================ round trips


def test_a_file_is_stored_at_its_key_and_read_back_from_the_location_put_returned(
    s3: MotoS3, tmp_path: Path
) -> None:
    repo = repo_for(s3)
    (tmp_path / "report.txt").write_text("42\n")
    location = repo.put("wf/wf-pod/report.tgz", tmp_path / "report.txt")
    assert location == {
        "s3": {"bucket": BUCKET, "endpoint": s3.endpoint, "insecure": True, "key": "wf/wf-pod/report.tgz"}
    }
    assert s3.read("wf/wf-pod/report.tgz") == b"42\n"
    repo.get(location, tmp_path / "back" / "report.txt")
    assert (tmp_path / "back" / "report.txt").read_text() == "42\n"


def test_a_key_only_location_means_the_repository_bucket(s3: MotoS3, tmp_path: Path) -> None:
    s3.client().put_object(Bucket=BUCKET, Key="inputs/data.csv", Body=b"a,b\n")
    repo_for(s3).get({"s3": {"key": "inputs/data.csv"}}, tmp_path / "data.csv")
    assert (tmp_path / "data.csv").read_text() == "a,b\n"


def test_key_prefix_goes_in_front_of_default_keys_and_not_of_explicit_ones(
    s3: MotoS3, tmp_path: Path
) -> None:
    repo = repo_for(s3, key_prefix="team-a/")
    (tmp_path / "f").write_text("x")
    assert repo.put("wf/pod/out.tgz", tmp_path / "f")["s3"]["key"] == "team-a/wf/pod/out.tgz"
    assert repo.put_at({"s3": {"key": "exact/out"}}, tmp_path / "f")["s3"]["key"] == "exact/out"
    assert s3.keys() == ["exact/out", "team-a/wf/pod/out.tgz"]


def test_an_explicit_location_may_name_another_bucket_on_the_same_endpoint(
    s3: MotoS3, tmp_path: Path
) -> None:
    s3.client().create_bucket(Bucket="other")
    (tmp_path / "f").write_text("elsewhere")
    location = repo_for(s3).put_at({"s3": {"bucket": "other", "key": "k"}}, tmp_path / "f")
    assert location["s3"]["bucket"] == "other"
    assert s3.read("k", bucket="other") == b"elsewhere"


def test_an_unarchived_directory_is_one_object_per_file_and_comes_back_whole(
    s3: MotoS3, tmp_path: Path
) -> None:
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    repo = repo_for(s3)
    stored = pack_output(src, tmp_path / "work", "out", {"none": {}})
    location = repo.put("wf/pod/out", stored)
    assert s3.keys() == ["wf/pod/out/a.txt", "wf/pod/out/sub/b.txt"]
    repo.get(location, tmp_path / "back")
    assert tree(tmp_path / "back") == {"a.txt": "a", "sub/b.txt": "b"}
    repo.delete(location)
    assert s3.keys() == []


@pytest.mark.parametrize("archive", [None, {"tar": {"compressionLevel": 1}}, {"zip": {}}, {"none": {}}])
def test_a_directory_round_trips_through_the_bucket_in_every_archive_format(
    s3: MotoS3, tmp_path: Path, archive: dict[str, Any] | None
) -> None:
    src = tmp_path / "results"
    (src / "deep").mkdir(parents=True)
    (src / "one.txt").write_text("1")
    (src / "deep" / "two.txt").write_text("2")
    repo = repo_for(s3)
    location = repo.put("wf/pod/results", pack_output(src, tmp_path / "work", "results", archive))
    loaded = load_input(
        {"name": "results", "path": "/in", **location, **({"archive": archive} if archive else {})},
        tmp_path / "in",
        staging=tmp_path / "staging",
        repository_get=repo.get,
        secret=lambda name, key: None,
    )
    assert loaded
    assert tree(tmp_path / "in") == {"one.txt": "1", "deep/two.txt": "2"}


def test_the_default_archive_is_a_gzipped_tar_holding_the_file_under_its_name(
    s3: MotoS3, tmp_path: Path
) -> None:
    (tmp_path / "msg").write_text("hello")
    repo_for(s3).put("k.tgz", pack_output(tmp_path / "msg", tmp_path / "work", "msg", None))
    (tmp_path / "k.tgz").write_bytes(s3.read("k.tgz"))
    with tarfile.open(tmp_path / "k.tgz", "r:gz") as tf:
        assert tf.getnames() == ["msg"]


def test_delete_removes_a_file_object(s3: MotoS3, tmp_path: Path) -> None:
    repo = repo_for(s3)
    (tmp_path / "f").write_text("x")
    location = repo.put("gone", tmp_path / "f")
    repo.delete(location)
    assert s3.keys() == []


def test_create_bucket_if_not_present_makes_the_bucket_on_first_put(s3: MotoS3, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    repo = repo_for(s3, bucket="fresh", create_bucket=True)
    repo.put("k", tmp_path / "f")
    assert s3.read("k", bucket="fresh") == b"x"


# ============================================================================================ errors


def test_a_missing_key_is_a_one_line_provider_error(s3: MotoS3, tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as info:
        repo_for(s3).get({"s3": {"key": "no/such/key"}}, tmp_path / "x")
    assert str(info.value) == f"artifact not found: s3://{BUCKET}/no/such/key"
    assert not (tmp_path / "x").exists()


def test_a_missing_bucket_is_named(s3: MotoS3, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ProviderError) as info:
        repo_for(s3, bucket="nope").put("k", tmp_path / "f")
    assert str(info.value) == f"s3 bucket 'nope' does not exist at {s3.endpoint}"
    with pytest.raises(ProviderError, match="s3 bucket 'nope' does not exist"):
        repo_for(s3, bucket="nope").get({"s3": {"key": "k"}}, tmp_path / "x")


def test_an_unreachable_endpoint_says_where_it_tried(s3: MotoS3, tmp_path: Path) -> None:
    port = closed_port()
    repo = S3Repository(S3Config(bucket="b", endpoint=f"127.0.0.1:{port}", insecure=True), s3.credentials)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ProviderError) as info:
        repo.put("k", tmp_path / "f")
    message = str(info.value)
    assert message.startswith(f"cannot reach S3 at http://127.0.0.1:{port}: ")
    assert "\n" not in message


def test_a_location_of_another_kind_is_unsupported(s3: MotoS3, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="gcs artifacts are not supported"):
        repo_for(s3).get({"gcs": {"bucket": "b", "key": "k"}}, tmp_path / "x")


def test_a_location_with_credentials_of_its_own_is_refused(s3: MotoS3, tmp_path: Path) -> None:
    location = {"s3": {"key": "k", "accessKeySecret": {"name": "someone-elses", "key": "ak"}}}
    with pytest.raises(UnsupportedError, match="names its own accessKeySecret 'someone-elses'"):
        repo_for(s3).get(location, tmp_path / "x")
    # The repository's own secret, as Argo records it in a location, is fine.
    s3.client().put_object(Bucket=BUCKET, Key="k", Body=b"ok")
    ours = {"s3": {"key": "k", "accessKeySecret": {"name": "s3-creds", "key": "accesskey"}}}
    repo_for(s3).get(ours, tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == b"ok"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ============================================================================================ ConfigMap


def configmap(data: dict[str, str], *, default: str | None = "default-v1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "artifact-repositories", "namespace": "argo"}
    if default:
        meta["annotations"] = {"workflows.argoproj.io/default-artifact-repository": default}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


FULL = """
archiveLogs: true
s3:
  bucket: my-bucket
  endpoint: minio.storage:9000
  insecure: true
  region: eu-west-1
  keyPrefix: runs
  keyFormat: "{{workflow.name}}/{{pod.name}}"
  accessKeySecret: {name: my-minio-cred, key: accesskey}
  secretKeySecret: {name: my-minio-cred, key: secretkey}
  createBucketIfNotPresent: {objectLocking: true}
"""


def test_the_annotated_default_key_of_a_repository_configmap_is_read() -> None:
    cm = configmap({"default-v1": FULL, "other": "s3: {bucket: other}"})
    assert parse_repository_configmap(cm) == ArtifactRepositoryConfig(
        s3=S3Config(
            bucket="my-bucket",
            endpoint="minio.storage:9000",
            insecure=True,
            region="eu-west-1",
            key_prefix="runs",
            key_format="{{workflow.name}}/{{pod.name}}",
            access_key_secret=SecretKeyRef("my-minio-cred", "accesskey"),
            secret_key_secret=SecretKeyRef("my-minio-cred", "secretkey"),
            create_bucket=True,
            object_locking=True,
        ),
        archive_logs=True,
    )
    other = parse_repository_configmap(cm, "other")
    assert (other.s3.bucket, other.s3.endpoint, other.s3.insecure, other.archive_logs) == (
        "other",
        "s3.amazonaws.com",
        False,
        None,
    )


def test_a_workflow_controller_configmap_is_read_at_its_artifact_repository() -> None:
    direct = configmap({"artifactRepository": "s3: {bucket: b1, endpoint: 'minio:9000'}"}, default=None)
    assert parse_repository_configmap(direct).s3.bucket == "b1"
    nested = configmap(
        {"config": "artifactRepository:\n  archiveLogs: false\n  s3: {bucket: b2}\nparallelism: 3\n"},
        default=None,
    )
    parsed = parse_repository_configmap(nested)
    assert (parsed.s3.bucket, parsed.archive_logs) == ("b2", False)


@pytest.mark.parametrize(
    ("data", "key", "default", "message"),
    [
        ({"default-v1": "s3: {endpoint: 'minio:9000'}"}, None, "default-v1",
         "data.default-v1.s3.bucket: required"),
        ({"x": "s3: {bucket: b}"}, None, None, "metadata.annotations: no key given and no "
         "workflows.argoproj.io/default-artifact-repository annotation"),
        ({"x": "s3: {bucket: b}"}, "y", None, "data.y: no such key"),
        ({"default-v1": "s3: [unclosed"}, None, "default-v1", "data.default-v1: not valid YAML: "),
        ({"default-v1": "just text"}, None, "default-v1",
         "data.default-v1: must be a mapping with an s3 block"),
        ({"default-v1": "archiveLogs: true"}, None, "default-v1", "data.default-v1: no s3 block"),
        ({"default-v1": "s3: {bucket: b, endpoint: 'http://minio:9000'}"}, None, "default-v1",
         "data.default-v1.s3.endpoint: give host[:port] without a scheme or path (insecure: true for http)"),
        ({"default-v1": "s3: {bucket: b, bukket: c}"}, None, "default-v1",
         "data.default-v1.s3.bukket: unknown field"),
        ({"default-v1": "s3: {bucket: b, insecure: 'yes'}"}, None, "default-v1",
         "data.default-v1.s3.insecure: must be true or false"),
        ({"default-v1": "s3: {bucket: b, accessKeySecret: {name: c}, secretKeySecret: {name: c, key: s}}"},
         None, "default-v1", "data.default-v1.s3.accessKeySecret.key: required"),
        ({"default-v1": "s3: {bucket: b, accessKeySecret: {name: c, key: a}}"}, None, "default-v1",
         "data.default-v1.s3.secretKeySecret: required with the other key secret"),
    ],
)  # fmt: skip
def test_a_malformed_repository_configmap_is_one_line_naming_the_configmap_and_field(
    data: dict[str, str], key: str | None, default: str | None, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_repository_configmap(configmap(data, default=default), key)
    line = info.value.one_line()
    assert line.startswith(f"ConfigMap argo/artifact-repositories: {message}")
    assert "\n" not in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gcs: {bucket: b}", "data.default-v1.gcs: gcs artifact repositories are not supported; use s3"),
        ("s3: {bucket: b, roleARN: 'arn:aws:iam::1:role/x'}", "data.default-v1.s3.roleARN: assuming a role"),
        (
            "s3: {bucket: b, caSecret: {name: ca, key: crt}}",
            "data.default-v1.s3.caSecret: a custom certificate",
        ),
    ],
)
def test_repository_kinds_and_fields_we_do_not_provide_are_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        parse_repository_configmap(configmap({"default-v1": text}))
    assert str(info.value).startswith(f"ConfigMap argo/artifact-repositories: {message}")


def test_a_config_survives_the_trip_through_argo_form() -> None:
    config = parse_repository_configmap(configmap({"default-v1": FULL})).s3
    assert parse_repository(config.to_argo(), source="x").s3 == config


# ============================================================================================ pod env


def test_executor_env_references_the_secret_and_never_holds_its_values(s3: MotoS3) -> None:
    config = s3.config(key_prefix="p")
    env = executor_env(config)
    by_name = {e["name"]: e for e in env}
    assert by_name[ENV_ACCESS_KEY] == {
        "name": ENV_ACCESS_KEY,
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "accesskey"}},
    }
    assert by_name[ENV_SECRET_KEY]["valueFrom"] == {"secretKeyRef": {"name": "s3-creds", "key": "secretkey"}}
    assert json.loads(by_name[ENV_REPOSITORY]["value"]) == config.to_argo()
    assert executor_env(ArtifactRepositoryConfig(s3=config, archive_logs=True)) == env
    renamed = {e["name"]: e for e in executor_env(config, "copied-creds")}
    assert renamed[ENV_ACCESS_KEY]["valueFrom"]["secretKeyRef"] == {
        "name": "copied-creds",
        "key": "accesskey",
    }


def test_the_pod_env_gives_back_a_working_repository(s3: MotoS3, tmp_path: Path) -> None:
    # What the kubelet does with the entries: plain values stay, secretKeyRefs become the secret's values.
    secret = {"accesskey": s3.credentials.access_key, "secretkey": s3.credentials.secret_key}
    environ = {
        e["name"]: e["value"] if "value" in e else str(secret[e["valueFrom"]["secretKeyRef"]["key"]])
        for e in executor_env(s3.config())
    }
    repo = repository_from_env(environ)
    assert repo is not None
    assert repo.config == s3.config()
    (tmp_path / "f").write_text("via env")
    repo.put("k", tmp_path / "f")
    assert s3.read("k") == b"via env"


def test_without_the_env_there_is_no_repository_and_missing_credentials_are_named(s3: MotoS3) -> None:
    assert repository_from_env({}) is None
    environ = {e["name"]: e["value"] for e in executor_env(s3.config()) if "value" in e}
    with pytest.raises(ExecutorError, match=r"needs credentials but \$SLUICE_S3_ACCESS_KEY is not set"):
        repository_from_env(environ)
    with pytest.raises(ExecutorError, match=r"\$SLUICE_ARTIFACT_REPOSITORY is not valid JSON"):
        repository_from_env({ENV_REPOSITORY: "{"})
