"""The local directory artifact repository and the archive helpers."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from engine.errors import ExecutorError, ProviderError, UnsupportedError
from engine.runtime.artifacts import load_input, location_of, pack_output
from engine.runtime.local.artifacts import LocalDirRepository


def test_put_get_delete_round_trip(tmp_path: Path):
    repo = LocalDirRepository(tmp_path / "repo")
    src = tmp_path / "f.txt"
    src.write_text("content")
    assert repo.put("wf/pod/f.txt", src) == {"local": {"key": "wf/pod/f.txt"}}
    dest = tmp_path / "out" / "g.txt"
    repo.get({"local": {"key": "wf/pod/f.txt"}}, dest)
    assert dest.read_text() == "content"
    repo.get({"s3": {"key": "wf/pod/f.txt"}}, tmp_path / "h.txt")  # key-only s3: the default repo
    assert (tmp_path / "h.txt").read_text() == "content"
    repo.delete({"local": {"key": "wf/pod/f.txt"}})
    with pytest.raises(ProviderError):
        repo.get({"local": {"key": "wf/pod/f.txt"}}, dest)
    repo.delete({"local": {"key": "wf/pod/f.txt"}})  # deleting twice is fine


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "", "a\\b"])
def test_keys_must_stay_inside_the_repository(tmp_path: Path, key: str):
    repo = LocalDirRepository(tmp_path / "repo")
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(ProviderError):
        repo.put(key, src)


def test_full_s3_location_is_not_ours(tmp_path: Path):
    repo = LocalDirRepository(tmp_path / "repo")
    with pytest.raises(UnsupportedError):
        repo.get({"s3": {"key": "k", "bucket": "b", "endpoint": "minio:9000"}}, tmp_path / "x")


def test_directories_are_stored_as_directories_without_archive(tmp_path: Path):
    repo = LocalDirRepository(tmp_path / "repo")
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("1")
    stored = pack_output(d, tmp_path / "work", "d", {"none": {}})
    repo.put("dirs/d", stored)
    repo.get({"local": {"key": "dirs/d"}}, tmp_path / "back")
    assert (tmp_path / "back" / "sub" / "f").read_text() == "1"


def test_tar_archive_holds_one_entry_under_the_base_name(tmp_path: Path):
    f = tmp_path / "report.txt"
    f.write_text("r")
    packed = pack_output(f, tmp_path / "work", "report", {"tar": {"compressionLevel": 1}})
    with tarfile.open(packed) as tf:
        assert tf.getnames() == ["report.txt"]


def test_unpacked_single_entry_becomes_the_artifact_path(tmp_path: Path):
    repo = LocalDirRepository(tmp_path / "repo")
    f = tmp_path / "orig-name.txt"
    f.write_text("payload")
    repo.put("a.tgz", pack_output(f, tmp_path / "work", "a", None))
    dest = tmp_path / "inputs" / "renamed"
    loaded = load_input(
        {"name": "a", "path": "/x", "local": {"key": "a.tgz"}},
        dest,
        staging=tmp_path / "staging",
        repository_get=repo.get,
        secret=lambda n, k: None,
    )
    assert loaded
    assert dest.read_text() == "payload"
    assert not (tmp_path / "staging").exists()


def test_unsafe_tar_members_are_refused(tmp_path: Path):
    import io

    repo = LocalDirRepository(tmp_path / "repo")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("../../evil")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "evil.tgz").write_bytes(buf.getvalue())
    with pytest.raises(ExecutorError):
        load_input(
            {"name": "e", "path": "/x", "local": {"key": "evil.tgz"}},
            tmp_path / "in" / "x",
            staging=tmp_path / "staging",
            repository_get=repo.get,
            secret=lambda n, k: None,
        )
    assert not (tmp_path / "evil").exists()


def test_location_of_ignores_non_location_keys():
    art = {"name": "a", "path": "/p", "archive": {"none": {}}, "s3": {"key": "k"}, "mode": 420}
    assert location_of(art) == ("s3", {"key": "k"})
    assert location_of({"name": "a", "path": "/p"}) is None
