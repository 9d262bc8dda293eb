"""Phases, results, commands and environment of local steps (real processes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from engine.errors import UnsupportedError
from engine.runtime.images import ImageTable
from engine.runtime.local.executor import LocalExecutor, expand_vars
from engine.runtime.local.isolation import MARKER_ENV
from engine.runtime.local.shims import install_shims
from engine.workflows.plan import DEADLINE_MESSAGE

from .conftest import Harness, Objects, make_step, run

PY = sys.executable


def sh(script: str, **kw: object) -> dict[str, object]:
    return {"image": "busybox", "command": ["sh", "-c", script], **kw}


def test_stdout_becomes_result_with_one_trailing_newline_trimmed(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container=sh("printf 'hello\\nworld\\n\\n'; echo oops >&2"))))
    assert out.phase == "Succeeded"
    assert out.exit_code == 0
    assert out.result == "hello\nworld\n"  # one newline trimmed, stderr not included
    assert (h.home / "pods").is_dir()


def test_result_keeps_last_256_kib(harness_factory):
    h: Harness = harness_factory()
    code = "import sys; sys.stdout.write('a' * 100000 + 'b' * 262144)"
    out = run(h.run(make_step(container={"command": [PY, "-c", code]})))
    assert out.phase == "Succeeded"
    assert out.result == "b" * 262144


def test_result_is_not_captured_when_nobody_reads_it(harness_factory):
    h: Harness = harness_factory()
    out = run(h.run(make_step(container=sh("echo hi"), capture_result=False)))
    assert out.phase == "Succeeded"
    assert out.result is None


def test_logs_go_to_files_under_the_pod_directory(harness_factory):
    h: Harness = harness_factory()
    step = make_step(container=sh("echo out; echo err >&2"))
    run(h.run(step))
    pod = h.home / "pods" / step.pod_name
    assert (pod / "main.log").read_text() == "out\n"
    assert (pod / "main.err").read_text() == "err\n"


def test_nonzero_exit_is_failed_with_exit_code(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container=sh("echo partial; exit 3"))))
    assert out.phase == "Failed"
    assert out.exit_code == 3
    assert out.message == "Error (exit code 3)"
    assert out.result == "partial"


def test_signal_death_reports_128_plus_signal(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container={"command": [PY, "-c", "import os; os.kill(os.getpid(), 9)"]})))
    assert out.phase == "Failed"
    assert out.exit_code == 137


def test_unknown_command_is_error(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container={"image": "x", "command": ["no-such-program-xyz"]})))
    assert out.phase == "Error"
    assert "no-such-program-xyz" in out.message
    assert "not found" in out.message
    assert not any(o.phase == "Running" for o in h.outcomes[out.node_id])


def test_non_executable_file_is_error_naming_permission(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container={"command": ["/etc/passwd"]})))
    assert out.phase == "Error"
    assert out.message == 'failed to start: exec: "/etc/passwd": permission denied'


def test_host_tmp_is_not_visible_to_a_step(harness_factory, tmp_path, mode):
    # A container never sees the host's /tmp: a path there names the step's private /tmp.
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container={"command": [str(script)]})))
    assert out.phase == "Error"
    assert out.message == f'failed to start: exec: "{script}": no such file or directory'


def test_shell_metacharacters_stay_one_argument(harness_factory, mode):
    h: Harness = harness_factory(mode)
    args = ["; rm -rf /", "$(whoami)", "a b", "`id`", "*"]
    out = run(h.run(make_step(container={"command": ["printf", "%s\\n"], "args": args})))
    assert out.phase == "Succeeded"
    assert out.result == "\n".join(args)


def test_dollar_paren_expands_from_container_env_and_double_dollar_escapes():
    env = {"A": "1", "B": "two"}
    assert expand_vars("$(A)-$(B)", env) == "1-two"
    assert expand_vars("$$(A)", env) == "$(A)"
    assert expand_vars("$(MISSING) $A ${A}", env) == "$(MISSING) $A ${A}"
    assert expand_vars("cost: $$5 $(A", env) == "cost: $5 $(A"


def test_args_expand_env_references(harness_factory):
    objects = Objects(configmaps={("default", "cfg"): {"greeting": "hello"}})
    h: Harness = harness_factory(objects=objects)
    c = {
        "command": ["echo"],
        "args": ["$(GREETING)", "$(WHO)", "$$(GREETING)"],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "WHO", "value": "dear $(GREETING)"},
        ],
    }
    out = run(h.run(make_step(container=c)))
    assert out.result == "hello dear hello $(GREETING)"


def test_dollar_paren_sees_only_declared_and_injected_variables(harness_factory):
    h: Harness = harness_factory()
    c = {
        "command": ["echo"],
        "args": ["$(PATH)", "$(HOME)", "$(ARGO_CONTAINER_NAME)", "$(OWN)"],
        "env": [{"name": "OWN", "value": "mine $(PATH)"}],
    }
    out = run(h.run(make_step(container=c)))
    assert out.result == "$(PATH) $(HOME) main mine $(PATH)"


def test_environment_is_not_the_engines(harness_factory, monkeypatch):
    monkeypatch.setenv("SLUICE_ENGINE_ONLY_SECRET", "leak")
    monkeypatch.setenv("TZ", "UTC")
    h: Harness = harness_factory()
    step = make_step(container={"command": ["env"]}, deadline=None)
    out = run(h.run(step))
    env = dict(line.split("=", 1) for line in (out.result or "").splitlines())
    assert "SLUICE_ENGINE_ONLY_SECRET" not in env
    assert env["TZ"] == "UTC"
    assert env["HOME"]
    assert env["PATH"].endswith(str(h.home / "bin"))
    assert env["ARGO_POD_NAME"] == step.pod_name
    assert env["ARGO_NODE_ID"] == step.node_id
    assert env["ARGO_WORKFLOW_NAME"] == "wf"
    assert env["ARGO_WORKFLOW_UID"] == "uid-1"
    assert env["ARGO_CONTAINER_NAME"] == "main"
    assert env["ARGO_INCLUDE_SCRIPT_OUTPUT"] == "true"
    assert '"name":"step"' in env["ARGO_TEMPLATE"]
    assert MARKER_ENV in env


def test_argo_deadline_is_exported_as_rfc3339(harness_factory):
    h: Harness = harness_factory()
    import time

    deadline = time.time() + 60
    out = run(h.run(make_step(container={"command": ["printenv", "ARGO_DEADLINE"]}, deadline=deadline)))
    assert out.phase == "Succeeded"
    assert out.result and out.result.endswith("Z") and "T" in out.result


def test_extra_path_is_prepended(harness_factory, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    tool = tools / "my-tool"
    tool.write_text("#!/bin/sh\necho from-my-tool\n")
    tool.chmod(0o755)
    h: Harness = harness_factory(extra_path=[str(tools)])
    out = run(h.run(make_step(container={"command": ["my-tool"]})))
    assert out.result == "from-my-tool"


def test_env_from_configmap_secret_and_fields(harness_factory, mode):
    objects = Objects(
        configmaps={("default", "settings"): {"COLOR": "blue", "SIZE": "3"}},
        secrets={("default", "creds"): {"password": "s3cr3t"}},
    )
    h: Harness = harness_factory(mode, objects=objects)
    c = {
        "command": ["env"],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "MAYBE",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
        ],
    }
    step = make_step(container=c)
    out = run(h.run(step))
    env = dict(line.split("=", 1) for line in (out.result or "").splitlines())
    assert env["CFG_COLOR"] == "blue"
    assert env["CFG_SIZE"] == "3"
    assert env["PASSWORD"] == "s3cr3t"
    assert env["POD"] == step.pod_name
    assert env["NS"] == "default"
    assert "MAYBE" not in env


def test_missing_secret_is_error(harness_factory):
    h: Harness = harness_factory()
    c = {
        "command": ["true"],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
    }
    out = run(h.run(make_step(container=c)))
    assert out.phase == "Error"
    assert 'secret "nope" not found' in out.message


def test_image_entrypoint_is_used_when_command_is_absent(harness_factory, mode):
    h: Harness = harness_factory(mode)
    out = run(h.run(make_step(container={"image": "argoproj/argosay:v2", "args": ["echo", "hi there"]})))
    assert out.phase == "Succeeded", out.message
    assert out.result == "hi there"
    out = run(h.run(make_step(container={"image": "argoproj/argosay:v2"})))
    assert out.result == "hello argo"


def test_unknown_image_without_command_is_error(harness_factory):
    h: Harness = harness_factory()
    out = run(h.run(make_step(container={"image": "example.com/mystery:1", "args": ["x"]})))
    assert out.phase == "Error"
    assert out.message.startswith("no command and no known entrypoint for image 'example.com/mystery:1'")


def test_images_yaml_in_home_extends_the_table(home):
    (home / "images.yaml").write_text("images:\n  acme/tool:1: {entrypoint: [echo, acme]}\n")
    h = Harness(home, "auto")
    out = run(h.run(make_step(container={"image": "docker.io/acme/tool:1", "args": ["ok"]})))
    assert out.result == "acme ok"


def test_script_runs_command_with_the_script_path(harness_factory, mode):
    h: Harness = harness_factory(mode)
    source = "import sys\nprint('script at', sys.argv[0])\nprint(6 * 7)\n"
    step = make_step(
        kind="script", container={"image": "python:alpine3.23", "command": [PY]}, script_source=source
    )
    out = run(h.run(step))
    assert out.phase == "Succeeded", out.message
    first, answer = (out.result or "").splitlines()
    assert first.endswith("/argo/staging/script")
    assert answer == "42"


def test_python_alias_is_made_when_host_has_only_python3(tmp_path):
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "python3").symlink_to(sys.executable)
    shims = tmp_path / "shims"
    written = install_shims(shims, str(host_bin))
    assert "python" in written
    assert os.path.realpath(shims / "python") == os.path.realpath(sys.executable)
    assert "argosay" in written  # no argosay on that PATH either


def test_starting_a_running_pod_again_is_a_no_op(harness_factory):
    h: Harness = harness_factory()
    step = make_step(container={"command": ["sleep", "0.3"]})

    async def scenario():
        await h.executor.start(step)
        await h.executor.start(step)
        assert h.executor.running() == {step.node_id}
        return await h.final(step.node_id)

    out = run(scenario())
    assert out.phase == "Succeeded"
    phases = [o.phase for o in h.outcomes[step.node_id]]
    assert phases == ["Running", "Succeeded"]
    lines = (h.home / "pods" / step.pod_name / "pid").read_text().splitlines()
    assert len(lines) == 1


def test_running_outcome_then_exactly_one_final(harness_factory, mode):
    h: Harness = harness_factory(mode)
    step = make_step(container=sh("exit 0"))
    out = run(h.run(step))
    phases = [o.phase for o in h.outcomes[step.node_id]]
    assert phases == ["Running", "Succeeded"]
    running = h.outcomes[step.node_id][0]
    assert running.started_at is not None
    assert out.started_at == running.started_at
    assert out.finished_at is not None and out.finished_at >= out.started_at
    assert out.pod_ip == "127.0.0.1"
    assert h.executor.running() == set()


def test_passed_deadline_fails_without_running(harness_factory):
    import time

    h: Harness = harness_factory()
    step = make_step(container={"command": ["true"]}, deadline=time.time() - 1)
    out = run(h.run(step))
    assert out.phase == "Failed"
    assert out.message == DEADLINE_MESSAGE
    assert [o.phase for o in h.outcomes[step.node_id]] == ["Failed"]


def test_a_step_past_its_deadline_gets_sigterm_and_keeps_what_it_did_until_then(harness_factory, mode):
    import time

    h: Harness = harness_factory(mode)
    script = "echo copied 3 rows; trap 'echo stopping; exit 3' TERM; sleep 60 & wait"
    step = make_step(container=sh(script), deadline=time.time() + 1.0)
    out = run(h.run(step))
    assert (out.phase, out.message) == ("Failed", DEADLINE_MESSAGE)
    assert out.exit_code == 3  # the command's own exit, from its TERM handler
    assert out.result == "copied 3 rows\nstopping"


def test_a_step_ignoring_sigterm_is_killed_after_its_pods_grace_period(harness_factory, mode):
    import time

    h: Harness = harness_factory(mode)
    step = make_step(
        container=sh("trap '' TERM; while true; do sleep 0.1; done"),
        deadline=time.time() + 0.5,
        pod_spec={"podSpecPatch": '{"terminationGracePeriodSeconds": 1}'},
    )
    started = time.monotonic()
    out = run(h.run(step))
    took = time.monotonic() - started
    assert (out.phase, out.exit_code) == ("Failed", 137)
    assert 1.4 < took < 10


def test_unsupported_template_kind_is_error(harness_factory):
    h: Harness = harness_factory()
    out = run(h.run(make_step(kind="resource", resource={"action": "get"})))
    assert out.phase == "Error"
    assert "not supported" in out.message


def test_unknown_isolation_mode_is_rejected(home):
    with pytest.raises(UnsupportedError):
        LocalExecutor(
            home=home,
            sink=lambda o: None,
            repository=None,
            objects=Objects(),
            isolation="docker",  # type: ignore[arg-type]
        )


def test_builtin_images_follow_entrypoint_and_cmd_rules():
    table = ImageTable()
    assert table.argv("argoproj/argosay:v2", ["echo", "x"]) == ["argosay", "echo", "x"]
    assert table.argv("argoproj/argosay:v2", None) == ["argosay"]
    # v1 is ubuntu + cowsay with CMD ["cowsay"] and no ENTRYPOINT: args replace the CMD.
    assert table.argv("argoproj/argosay:v1", None) == ["cowsay"]
    assert table.argv("argoproj/argosay:v1", ["sh", "-c", "x"]) == ["sh", "-c", "x"]
    assert table.argv("docker/whalesay:latest", ["hi"]) == ["cowsay", "hi"]
    assert table.argv("docker.io/library/python:3.12", None) == ["python3"]
    assert table.argv("quay.io/argoproj/argosay:v2", []) == ["argosay"]
    assert table.argv("nope/nope", None) is None


def test_images_yaml_rejects_malformed_entries(tmp_path: Path):
    from engine.errors import SpecError

    bad = tmp_path / "images.yaml"
    bad.write_text("images:\n  a: 3\n  b: {entrypoint: [x], shell: y}\n")
    with pytest.raises(SpecError) as err:
        ImageTable.load(bad)
    assert "images.a" in str(err.value)
    assert len(err.value.problems) == 2
