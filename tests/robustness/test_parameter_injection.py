"""Hostile parameter values stay inert data through a real ``sluice run``.

Each payload goes in with ``-p``, is substituted into a step's arguments, echoed by the step to stdout
and to a file, and passed on through ``outputs.result`` to a second step that writes it again. Every
copy must be byte-for-byte the payload: no substitution of the value's own ``{{...}}`` tags, no
expression or template evaluation, no shell interpretation, and no file created by the payload.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tests.cli.support import cli, sluice, write

PAYLOADS = [
    "{{workflow.name}}",
    "{{workflow.parameters.p0}}",
    "{{inputs.parameters.value}}",
    "{{=1+1}}",
    "{{= sprig.upper('x') }}",
    "{{steps.a0.outputs.result}}{{tasks.a0.outputs.result}}",
    "$(id)",
    "`id`",
    "; rm -rf /tmp/x",
    "| cat /etc/passwd",
    "; touch {dir}/pwned-semicolon",
    "$(touch {dir}/pwned-subshell)",
    "`touch {dir}/pwned-backtick`",
    "&& touch {dir}/pwned-and",
    "> {dir}/pwned-redirect",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for x in range(3) %}{{x}}{% endfor %}",
    "__import__('os').system('touch {dir}/pwned-python')",
    "line one\nline two\n{{workflow.uid}}",
    "\t\x01\x02\x1b[31mred\x1b[0m\x7f ünïcödé ✓ 😀 \u202e \ufeff",
    "' \" \\ \\n $HOME ${HOME} %s %d {0} {{",
    "}}{{",
    "-n",
    "--help",
    "",
    "x" * 20_000,
]


def injection_workflow(count: int) -> str:
    """A DAG with, for each payload i, task a<i> echoing parameter p<i> and b<i> echoing a<i>'s result."""
    echo = 'printf "%s" "$1"; printf "%s" "$1" > "$2"'
    tasks = []
    for i in range(count):
        tasks.append(
            {
                "name": f"a{i}",
                "template": "echo",
                "arguments": {
                    "parameters": [
                        {"name": "value", "value": f"{{{{workflow.parameters.p{i}}}}}"},
                        {"name": "out", "value": f"a{i}"},
                    ]
                },
            }
        )
        tasks.append(
            {
                "name": f"b{i}",
                "depends": f"a{i}",
                "template": "echo",
                "arguments": {
                    "parameters": [
                        {"name": "value", "value": f"{{{{tasks.a{i}.outputs.result}}}}"},
                        {"name": "out", "value": f"b{i}"},
                    ]
                },
            }
        )
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "inert-"},
        "spec": {
            "entrypoint": "main",
            "arguments": {
                "parameters": [{"name": "dir"}]
                + [{"name": f"p{i}", "value": "default"} for i in range(count)]
            },
            "templates": [
                {"name": "main", "dag": {"tasks": tasks}},
                {
                    "name": "echo",
                    "inputs": {"parameters": [{"name": "value"}, {"name": "out"}]},
                    "container": {
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            echo,
                            "sh",
                            "{{inputs.parameters.value}}",
                            "{{workflow.parameters.dir}}/{{inputs.parameters.out}}",
                        ],
                    },
                },
            ],
        },
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def test_hostile_parameter_values_come_out_byte_for_byte(home: Path, tmp_path: Path, shared: Path) -> None:
    payloads = [p.replace("{dir}", str(shared)) for p in PAYLOADS]
    path = write(tmp_path, "inert.yaml", injection_workflow(len(payloads)))
    args = ["-p", f"dir={shared}"]
    for i, p in enumerate(payloads):
        args += ["-p", f"p{i}={p}"]
    res = sluice("run", path, *args, "-o", "json", home=home, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    obj = json.loads(res.stdout)
    assert obj["status"]["phase"] == "Succeeded", obj["status"].get("message")
    results = {
        n["displayName"]: n["outputs"]["result"]
        for n in obj["status"]["nodes"].values()
        if n["type"] == "Pod"
    }
    for i, payload in enumerate(payloads):
        expected = payload.encode()
        assert (shared / f"a{i}").read_bytes() == expected, f"file of a{i} for {payload!r}"
        assert results[f"a{i}"] == payload, f"stdout of a{i} for {payload!r}"
        assert results[f"b{i}"] == payload, f"stdout of b{i} for {payload!r}"
        assert (shared / f"b{i}").read_bytes() == expected, f"file of b{i} for {payload!r}"
    made = sorted(p.name for p in shared.iterdir())
    assert made == sorted([f"a{i}" for i in range(len(payloads))] + [f"b{i}" for i in range(len(payloads))])


def test_hostile_values_from_a_parameter_file_stay_inert(home: Path, tmp_path: Path, shared: Path) -> None:
    payloads = ["{{workflow.name}}", "$(touch {dir}/pwned)", "a: b\n- c", "{{=1+1}}"]
    payloads = [p.replace("{dir}", str(shared)) for p in payloads]
    params = {"dir": str(shared), **{f"p{i}": p for i, p in enumerate(payloads)}}
    params_file = write(tmp_path, "params.yaml", yaml.safe_dump(params))
    path = write(tmp_path, "inert.yaml", injection_workflow(len(payloads)))
    res = sluice("run", path, "-f", params_file, home=home)
    assert res.returncode == 0, res.stdout + res.stderr
    for i, payload in enumerate(payloads):
        assert (shared / f"a{i}").read_bytes() == payload.encode()
        assert (shared / f"b{i}").read_bytes() == payload.encode()
    assert not (shared / "pwned").exists()


def test_a_parameter_named_like_a_field_is_only_an_argument(home: Path, tmp_path: Path) -> None:
    # Argo adds undeclared -p names to spec.arguments; they must not reach any other field.
    path = write(tmp_path, "inert.yaml", injection_workflow(1))
    res = cli(
        "run",
        path,
        *("-p", "dir=/var/tmp/nonexistent-sluice-dir", "-p", "p0=x"),
        *("-p", "spec.entrypoint=evil", "-p", "entrypoint=evil", "-p", "metadata.name=evil"),
        "-o",
        "json",
        home=home,
    )
    obj = json.loads(res.stdout)
    assert obj["spec"]["entrypoint"] == "main"
    assert obj["metadata"]["name"].startswith("inert-")
    args = {p["name"]: p.get("value") for p in obj["spec"]["arguments"]["parameters"]}
    assert args["spec.entrypoint"] == args["entrypoint"] == args["metadata.name"] == "evil"
    assert [n["templateName"] for n in obj["status"]["nodes"].values() if n["type"] == "DAG"] == ["main"]


def test_non_utf8_bytes_in_a_parameter_reach_the_step_unchanged(
    home: Path, tmp_path: Path, shared: Path
) -> None:
    raw = b"caf\xe9 \xff\xfe\x80 \x1b[0m end"
    path = write(tmp_path, "inert.yaml", injection_workflow(1))
    res = sluice("run", path, "-p", f"dir={shared}", "-p", "p0=" + os.fsdecode(raw), home=home)
    assert "Traceback" not in res.stderr, res.stderr
    assert (shared / "a0").read_bytes() == raw
