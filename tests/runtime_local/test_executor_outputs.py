"""Output parameters and artifacts, input artifacts and volumes of local steps."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.workflows.plan import OutputArtifactSpec, OutputParameterSpec

from .conftest import Harness, Objects, make_step, run

PY = sys.executable


def sh(script: str, **kw: object) -> dict[str, object]:
    return {"image": "alpine:3.23", "command": ["sh", "-c", script], **kw}


def test_output_parameter_trims_one_trailing_newline(harness_factory, mode):
    h: Harness = harness_factory(mode)
    step = make_step(
        container=sh("printf 'a\\n\\n' > /tmp/p"),
        output_parameters=(OutputParameterSpec("p", "/tmp/p"),),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded"
    assert out.parameters == (("p", "a\n"),)


def test_missing_output_parameter_is_error_unless_default(harness_factory, mode):
    h: Harness = harness_factory(mode)
    missing = make_step(container=sh("true"), output_parameters=(OutputParameterSpec("p", "/tmp/nope"),))
    out = run(h.run(missing))
    assert out.phase == "Error"
    assert "'p'" in out.message and "/tmp/nope" in out.message
    assert out.exit_code == 0

    defaulted = make_step(
        container=sh("true"), output_parameters=(OutputParameterSpec("p", "/tmp/nope", default="dflt"),)
    )
    out = run(h.run(defaulted))
    assert out.phase == "Succeeded"
    assert out.parameters == (("p", "dflt"),)


def test_failed_step_still_reports_the_outputs_it_has(harness_factory):
    h: Harness = harness_factory()
    step = make_step(
        container=sh("echo v > /tmp/p; exit 2"),
        output_parameters=(OutputParameterSpec("p", "/tmp/p"), OutputParameterSpec("q", "/tmp/q")),
    )
    out = run(h.run(step))
    assert out.phase == "Failed"  # the missing q does not turn Failed into Error
    assert out.message == "Error (exit code 2)"
    assert out.parameters == (("p", "v"),)


def test_output_artifacts_round_trip_tgz_and_none(harness_factory, mode):
    h: Harness = harness_factory(mode)
    producer = make_step(
        container=sh("mkdir -p /mnt/out/sub && echo one > /mnt/out/sub/a.txt && echo raw > /tmp/raw.txt"),
        output_artifacts=(
            OutputArtifactSpec("dir", "/mnt/out", key="wf/p/dir.tgz"),
            OutputArtifactSpec("raw", "/tmp/raw.txt", key="wf/p/raw.txt", archive={"none": {}}),
        ),
    )
    out = run(h.run(producer))
    assert out.phase == "Succeeded", out.message
    by_name = {a["name"]: a for a in out.artifacts}
    assert by_name["dir"] == {"name": "dir", "path": "/mnt/out", "local": {"key": "wf/p/dir.tgz"}}
    assert by_name["raw"] == {
        "name": "raw",
        "path": "/tmp/raw.txt",
        "local": {"key": "wf/p/raw.txt"},
        "archive": {"none": {}},
    }
    stored = h.home / "artifacts" / "wf" / "p"
    assert (stored / "dir.tgz").read_bytes()[:2] == b"\x1f\x8b"
    with tarfile.open(stored / "dir.tgz") as tf:
        assert "out/sub/a.txt" in tf.getnames()
    assert (stored / "raw.txt").read_text() == "raw\n"

    consumer = make_step(
        container=sh("cat /in/dir/sub/a.txt /in/raw.txt /work2/sub/a.txt"),
        input_artifacts=(
            {"name": "dir", "path": "/in/dir", **{"local": by_name["dir"]["local"]}},
            {"name": "raw", "path": "/in/raw.txt", "local": by_name["raw"]["local"], "archive": {"none": {}}},
            {"name": "dir2", "path": "/work2", "s3": {"key": "wf/p/dir.tgz"}},
        ),
    )
    out = run(h.run(consumer))
    assert out.phase == "Succeeded", out.message
    assert out.result == "one\nraw\none"


def test_explicit_key_only_location_names_the_key(harness_factory):
    h: Harness = harness_factory()
    step = make_step(
        container=sh("echo x > /tmp/f"),
        output_artifacts=(
            OutputArtifactSpec("f", "/tmp/f", key="default/key.tgz", location={"s3": {"key": "my/file.tgz"}}),
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.artifacts[0]["local"] == {"key": "my/file.tgz"}
    assert (h.home / "artifacts" / "my" / "file.tgz").exists()


def test_zip_archive_is_optional_format(harness_factory):
    import zipfile

    h: Harness = harness_factory()
    step = make_step(
        container=sh("echo z > /tmp/z"),
        output_artifacts=(OutputArtifactSpec("z", "/tmp/z", key="z.zip", archive={"zip": {}}),),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    with zipfile.ZipFile(h.home / "artifacts" / "z.zip") as zf:
        assert zf.read("z") == b"z\n"


def test_missing_output_artifact_is_error_unless_optional(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(
        h.run(make_step(container=sh("true"), output_artifacts=(OutputArtifactSpec("a", "/tmp/a", "k"),)))
    )
    assert out.phase == "Error"
    assert "'a'" in out.message
    out = run(
        h.run(
            make_step(
                container=sh("true"),
                output_artifacts=(OutputArtifactSpec("a", "/tmp/a", "k", optional=True),),
            )
        )
    )
    assert out.phase == "Succeeded"
    assert out.artifacts == ()


def test_raw_input_artifact_is_written_with_mode(harness_factory, mode):
    h: Harness = harness_factory(mode)
    step = make_step(
        container=sh("cat /inputs/text/data; stat -c %a /inputs/text/data"),
        input_artifacts=(
            {"name": "text", "path": "/inputs/text/data", "raw": {"data": "hello raw"}, "mode": 0o600},
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "hello raw600"


def test_input_artifact_sub_path_selects_inside_a_tarball(harness_factory, home):
    h: Harness = harness_factory()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("pkg/docs/readme.md", b"read me"), ("pkg/src/main.py", b"print()")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (home / "artifacts").mkdir(parents=True, exist_ok=True)
    (home / "artifacts" / "pkg.tgz").write_bytes(buf.getvalue())
    step = make_step(
        container=sh("ls /docs; cat /docs/readme.md"),
        input_artifacts=({"name": "d", "path": "/docs", "local": {"key": "pkg.tgz"}, "subPath": "docs"},),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "readme.md\nread me"


def test_missing_input_artifact_is_error_unless_optional(harness_factory):
    h: Harness = harness_factory()
    art = {"name": "gone", "path": "/in/x", "local": {"key": "does/not/exist"}}
    out = run(h.run(make_step(container=sh("true"), input_artifacts=(art,))))
    assert out.phase == "Error"
    assert "'gone'" in out.message
    assert not any(o.phase == "Running" for o in h.outcomes[out.node_id])
    out = run(
        h.run(
            make_step(
                container=sh("test -e /in/x || echo skipped"), input_artifacts=({**art, "optional": True},)
            )
        )
    )
    assert out.phase == "Succeeded"
    assert out.result == "skipped"


@pytest.fixture
def http_server() -> Iterator[str]:
    payload = gzip.compress(b"not a tarball")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/file.txt":
                body = b"served over http"
            elif self.path == "/file.gz":
                body = payload
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_input_artifact_is_downloaded(harness_factory, http_server):
    h: Harness = harness_factory()
    step = make_step(
        container=sh("cat /in/f.txt"),
        input_artifacts=({"name": "f", "path": "/in/f.txt", "http": {"url": f"{http_server}/file.txt"}},),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "served over http"
    gz = make_step(
        container=sh("gzip -dc /in/f.gz"),
        input_artifacts=({"name": "f", "path": "/in/f.gz", "http": {"url": f"{http_server}/file.gz"}},),
    )
    out = run(h.run(gz))
    assert out.result == "not a tarball"  # a gzip that is not a tar stays as it is
    missing = make_step(
        container=sh("true"),
        input_artifacts=({"name": "f", "path": "/in/f", "http": {"url": f"{http_server}/nope"}},),
    )
    out = run(h.run(missing))
    assert out.phase == "Error"
    assert "404" in out.message


def test_git_input_artifact_is_cloned(harness_factory, tmp_path):
    repo = tmp_path / "src-repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README").write_text("v1\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    first = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (repo / "README").write_text("v2\n")
    subprocess.run([*git, "commit", "-q", "-am", "two"], check=True)
    h: Harness = harness_factory()
    step = make_step(
        container=sh("cat /src/README", workingDir="/src"),
        input_artifacts=(
            {"name": "code", "path": "/src", "git": {"repo": f"file://{repo}", "revision": first}},
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "v1"


def test_empty_dir_volume_is_shared_by_init_and_main(harness_factory, mode):
    h: Harness = harness_factory(mode)
    mount = [{"name": "work", "mountPath": "/mnt/vol"}]
    step = make_step(
        init_containers=(
            {"name": "seed", "command": ["sh", "-c", "echo seeded > /mnt/vol/f"], "volumeMounts": mount},
        ),
        container=sh("cat /mnt/vol/f; echo out > /mnt/vol/out", volumeMounts=mount),
        volumes=({"name": "work", "emptyDir": {}},),
        output_parameters=(OutputParameterSpec("o", "/mnt/vol/out"),),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "seeded"
    assert out.parameters == (("o", "out"),)
    assert (h.home / "pods" / step.pod_name / "volumes" / "work" / "out").read_text() == "out\n"
    assert (h.home / "pods" / step.pod_name / "init-seed.log").exists() is False
    assert (h.home / "pods" / step.pod_name / "seed.log").exists()


def test_persistent_volume_claim_outlives_the_pod(harness_factory, mode):
    h: Harness = harness_factory(mode)
    vol = ({"name": "data", "persistentVolumeClaim": {"claimName": "wf-data"}},)
    mount = [{"name": "data", "mountPath": "/mnt/data"}]
    first = make_step(container=sh("echo kept > /mnt/data/file", volumeMounts=mount), volumes=vol)
    second = make_step(container=sh("cat /mnt/data/file", volumeMounts=mount), volumes=vol)
    assert run(h.run(first)).phase == "Succeeded"
    out = run(h.run(second))
    assert out.result == "kept"
    assert (h.home / "volumes" / "wf-data" / "file").read_text() == "kept\n"


def test_config_map_and_secret_volumes_are_materialised(harness_factory, mode):
    objects = Objects(
        configmaps={("default", "app"): {"app.conf": "debug=true", "other": "x"}},
        secrets={("default", "tls"): {"key.pem": "PRIVATE"}},
    )
    h: Harness = harness_factory(mode, objects=objects)
    step = make_step(
        container=sh(
            "cat /etc/app/settings.conf; echo; cat /secret/mountpath/key.pem",
            volumeMounts=[
                {"name": "cfg", "mountPath": "/etc/app"},
                {"name": "sec", "mountPath": "/secret/mountpath", "readOnly": True},
            ],
        ),
        volumes=(
            {
                "name": "cfg",
                "configMap": {"name": "app", "items": [{"key": "app.conf", "path": "settings.conf"}]},
            },
            {"name": "sec", "secret": {"secretName": "tls"}},
        ),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "debug=true\nPRIVATE"
    assert not Path("/etc/app/settings.conf").exists()


def test_host_path_volume_is_the_host_directory(harness_factory, tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from host")
    h: Harness = harness_factory(mode)
    step = make_step(
        container=sh(
            "cat /host/in.txt; echo back > /host/out.txt", volumeMounts=[{"name": "h", "mountPath": "/host"}]
        ),
        volumes=({"name": "h", "hostPath": {"path": str(shared)}},),
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    assert out.result == "from host"
    assert (shared / "out.txt").read_text() == "back\n"


def test_unknown_volume_is_error(harness_factory):
    h: Harness = harness_factory()
    step = make_step(container=sh("true", volumeMounts=[{"name": "nope", "mountPath": "/x"}]))
    out = run(h.run(step))
    assert out.phase == "Error"
    assert "nope" in out.message


def test_archive_logs_stores_main_logs_artifact(harness_factory):
    h: Harness = harness_factory()
    step = make_step(container=sh("echo to-stdout; echo to-stderr >&2"), archive_logs=True)
    out = run(h.run(step))
    assert out.phase == "Succeeded"
    logs = [a for a in out.artifacts if a["name"] == "main-logs"]
    assert logs == [{"name": "main-logs", "local": {"key": f"wf/{step.pod_name}/main.log"}}]
    stored = h.home / "artifacts" / "wf" / step.pod_name / "main.log"
    assert stored.read_text() == "to-stdout\nto-stderr\n"
