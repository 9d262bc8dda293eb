"""http templates on the test cluster (``sluice operator``, the test kubelet running the step pods) and on
the embedded runtime (``sluice run``): the same workflow, against one real server, ends with the same
http nodes on both, phase, message and result."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from tests.examples.test_examples import run_example, sluice
from tests.kubernetes.cluster import Cluster, nodes_by_name
from tests.kubernetes.httpserver import TOKEN, HttpServer, closed_port, http_server
from tests.kubernetes.test_operator import workflow

__all__ = ["http_server"]

SECRET = "http-api"
SECRETS = "/api/v1/namespaces/default/secrets"


def token_header(secret: str) -> dict[str, Any]:
    return {"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}


def http_workflow(server: HttpServer, closed: int) -> dict[str, Any]:
    """One DAG of independent http calls, one per way an http step ends, and a step that uses a result."""
    calls: dict[str, dict[str, Any]] = {
        "fetch": {"url": server.url("/ok")},
        "judged": {"url": server.url("/ok"), "successCondition": "response.statusCode == 201"},
        "not-found": {"url": server.url("/missing")},
        "with-token": {"url": server.url("/token"), "headers": [token_header(SECRET)]},
        "no-secret": {"url": server.url("/token"), "headers": [token_header("http-absent")]},
        "closed-port": {"url": f"http://127.0.0.1:{closed}/", "timeoutSeconds": 10},
        "empty": {"url": server.url("/empty"), "method": "POST", "body": "$(ARGO_POD_NAME) & $$"},
    }
    tasks: list[dict[str, Any]] = [{"name": name, "template": name} for name in calls]
    tasks.append(
        {
            "name": "use",
            "template": "use",
            "dependencies": ["fetch"],
            "arguments": {"parameters": [{"name": "said", "value": "{{tasks.fetch.outputs.result}}"}]},
        }
    )
    return workflow(
        [
            {"name": "main", "dag": {"tasks": tasks}},
            *({"name": name, "http": http} for name, http in calls.items()),
            {
                "name": "use",
                "inputs": {"parameters": [{"name": "said"}]},
                "container": {"image": "busybox", "command": ["echo", "got: {{inputs.parameters.said}}"]},
            },
        ]
    )


def verdicts(status: dict[str, Any]) -> dict[str, tuple[str, str, str | None]]:
    """Per http node (display name): phase, message, outputs.result."""
    return {
        name: (node["phase"], node.get("message") or "", (node.get("outputs") or {}).get("result"))
        for name, node in nodes_by_name(status).items()
        if node["type"] == "HTTP"
    }


def test_http_steps_end_alike_on_the_cluster_and_the_embedded_runtime(
    cluster: Cluster, http_server: HttpServer, tmp_path: Path
) -> None:
    closed = closed_port()
    manifest = http_workflow(http_server, closed)
    cluster.api.create(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": "default"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
    )
    status = cluster.run(manifest, timeout=240)
    on_cluster = verdicts(status)

    home = tmp_path / "embedded"
    home.mkdir()
    sluice(home, "secret", "create", SECRET, "--from-literal", f"token={TOKEN}")
    path = tmp_path / "http.yaml"
    path.write_text(yaml.safe_dump(manifest))
    embedded = run_example(home, str(path))  # an absolute path stays itself under the examples directory

    assert embedded.status.get("phase") == status["phase"] == "Failed", embedded.stderr
    assert on_cluster == verdicts(embedded.status)

    assert on_cluster["fetch"] == ("Succeeded", "", "hello from http")
    assert nodes_by_name(status)["use"]["outputs"]["result"] == "got: hello from http"
    assert on_cluster["judged"] == (
        "Failed",
        "successCondition 'response.statusCode == 201' was false (response code 200)",
        "hello from http",
    )
    assert on_cluster["not-found"] == ("Failed", "received non-2xx response code: 404", "missing")
    assert on_cluster["with-token"] == ("Succeeded", "", "token accepted")
    assert on_cluster["no-secret"] == ("Error", "header X-Token: secret http-absent/token not found", None)
    # A request that gets no response fails (as in Argo, whose agent reports a request error as Failed).
    phase, message, result = on_cluster["closed-port"]
    assert (phase, result) == ("Failed", None)
    assert message.startswith(f"GET http://127.0.0.1:{closed}/: Cannot connect to host"), message
    assert on_cluster["empty"] == ("Succeeded", "", None)

    # Each run sent the secret's value as the header: the cluster's through the kubelet's secretKeyRef.
    assert [r.token for r in http_server.requests_to("/token")] == [TOKEN, TOKEN]
    posted = http_server.requests_to("/empty")
    assert [(r.method, r.body) for r in posted] == [("POST", "$(ARGO_POD_NAME) & $$")] * 2
    # The operator never put the secret's value into a pod.
    assert all(TOKEN not in yaml.safe_dump(pod) for pod in cluster.pods())
