"""The install manifests under deploy/ (`kubectl apply -k deploy/`) and the image's Dockerfile.

Every YAML file under deploy/ is read as it is: least-privilege RBAC without wildcards, a kustomization
that lists exactly the files present, references between the objects that resolve, CRDs that match
the models, and a Dockerfile that builds a static sluice-run and runs as a non-root user. When kubectl
(or kustomize) is installed, the kustomization is also rendered and the output checked.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import shlex
import shutil
import struct
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli.main import crd_text
from engine.runtime.kubernetes.settings import DEFAULT_JETSTREAM_IMAGE
from engine.spec.crd import custom_resource_definitions, file_name

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
SLUICE_RUN_SOURCE = REPO / "engine" / "runtime" / "kubernetes" / "sluice-run.c"
NAMESPACE = "sluicegate"
IMAGE = "ghcr.io/sluicegate/sluicegate"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}

Doc = dict[str, Any]


# ------------------------------------------------------------------------------------------ loading


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


@functools.cache
def documents(path: Path) -> tuple[Doc, ...]:
    with path.open(encoding="utf-8") as f:
        return tuple(d for d in yaml.safe_load_all(f) if d is not None)


def kustomization() -> Doc:
    (doc,) = documents(DEPLOY / "kustomization.yaml")
    return doc


def objects() -> list[Doc]:
    """Every Kubernetes object in deploy/'s files (kustomize's own files hold none)."""
    return [
        d
        for p in yaml_files()
        for d in documents(p)
        if "apiVersion" in d and "kind" in d and d["kind"] != "Kustomization"
    ]


def the(kind: str, docs: Iterable[Doc] | None = None) -> Doc:
    (doc,) = [d for d in (objects() if docs is None else docs) if d["kind"] == kind]
    return doc


def named(kind: str, docs: Iterable[Doc] | None = None) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in (objects() if docs is None else docs) if d["kind"] == kind}


def operator_pod(docs: Iterable[Doc] | None = None) -> Doc:
    pod: Doc = the("Deployment", docs)["spec"]["template"]
    return pod


def operator_container(docs: Iterable[Doc] | None = None) -> Doc:
    (container,) = operator_pod(docs)["spec"]["containers"]
    c: Doc = container
    return c


# ------------------------------------------------------------------------------------------ RBAC

RULE_FIELDS = ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")


def rbac_wildcards(doc: Doc) -> list[str]:
    """Every grant of a Role or ClusterRole that reaches further than it names, one line each."""
    if doc.get("kind") not in ("Role", "ClusterRole"):
        return []
    where = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
    problems = []
    if "aggregationRule" in doc:
        problems.append(f"{where}: aggregationRule takes its rules from other roles")
    for i, rule in enumerate(doc.get("rules") or []):
        for field in RULE_FIELDS:
            problems += [f"{where} rules[{i}].{field}: {v!r}" for v in rule.get(field) or [] if "*" in str(v)]
    return problems


def grants(role: Doc) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_no_role_under_deploy_grants_a_wildcard() -> None:
    roles = [d for d in objects() if d["kind"] in ("Role", "ClusterRole")]
    assert roles, "deploy/ should hold the operator's ClusterRole"
    assert [p for r in roles for p in rbac_wildcards(r)] == []


def test_the_wildcard_check_reports_every_wildcard_it_is_shown() -> None:
    role: Doc = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "greedy"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": ["*"], "resources": ["pods/*"], "verbs": ["*"], "resourceNames": ["*"]},
        ],
    }
    assert rbac_wildcards(role) == [
        "ClusterRole/greedy rules[1].apiGroups: '*'",
        "ClusterRole/greedy rules[1].resources: 'pods/*'",
        "ClusterRole/greedy rules[1].verbs: '*'",
        "ClusterRole/greedy rules[1].resourceNames: '*'",
    ]
    role["rules"] = role["rules"][:1]
    assert rbac_wildcards(role) == []
    assert rbac_wildcards({**role, "kind": "Role", "aggregationRule": {}}) == [
        "Role/greedy: aggregationRule takes its rules from other roles"
    ]


OPERATOR_GRANTS: set[tuple[str, str, str]] = {
    *{("sluice.dev", "workflows", v) for v in ("get", "list", "watch", "create", "patch", "delete")},
    ("sluice.dev", "workflows/status", "patch"),
    *{
        ("sluice.dev", r, v)
        for r in ("workflowtemplates", "clusterworkflowtemplates")
        for v in ("get", "list", "watch")
    },
    *{("sluice.dev", "cronworkflows", v) for v in ("get", "list", "watch")},
    ("sluice.dev", "cronworkflows/status", "patch"),
    *{("", "pods", v) for v in ("get", "list", "watch", "create", "patch", "delete")},
    ("", "pods/log", "get"),
    *{("", "configmaps", v) for v in ("get", "list", "watch", "create", "patch")},
    *{("", "persistentvolumeclaims", v) for v in ("create", "delete", "get")},
    *{(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")},
}


def test_the_operator_role_grants_exactly_what_the_operator_uses() -> None:
    role = named("ClusterRole")["sluice-operator"]
    assert grants(role) == OPERATOR_GRANTS
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])
    assert not any(r == "secrets" for _, r, _ in grants(role)), "the operator never reads a Secret"


def test_the_binding_gives_the_role_to_the_operators_service_account() -> None:
    binding = named("ClusterRoleBinding")["sluice-operator"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "sluice-operator",
    }
    assert "sluice-operator" in named("ClusterRole")
    sa = named("ServiceAccount")["sluice-operator"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
    assert operator_pod()["spec"]["serviceAccountName"] == sa["metadata"]["name"]


# ------------------------------------------------------------------------------------------ kustomization


def listed_files() -> list[str]:
    k = kustomization()
    return [*k.get("resources", []), *k.get("configurations", [])]


def test_the_kustomization_lists_only_files_inside_deploy_that_exist() -> None:
    for entry in listed_files():
        path = (DEPLOY / entry).resolve()
        assert path.is_relative_to(DEPLOY), f"{entry}: kustomize loads no file from outside deploy/"
        assert path.is_file(), f"{entry} is listed but missing"
    assert len(listed_files()) == len(set(listed_files()))


def test_every_yaml_file_under_deploy_is_listed_in_the_kustomization() -> None:
    on_disk = {p.relative_to(DEPLOY).as_posix() for p in yaml_files()} - {"kustomization.yaml"}
    assert on_disk - set(listed_files()) == set(), "orphan files: list them in deploy/kustomization.yaml"


def test_namespaced_objects_live_in_the_kustomizations_namespace() -> None:
    assert kustomization()["namespace"] == NAMESPACE
    assert list(named("Namespace")) == [NAMESPACE]
    for doc in objects():
        ns = doc["metadata"].get("namespace")
        if doc["kind"] in CLUSTER_SCOPED:
            assert ns is None, f"{doc['kind']}/{doc['metadata']['name']} is cluster-scoped"
        else:
            assert ns == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"


def test_every_object_fits_the_annotation_client_side_apply_keeps() -> None:
    # `kubectl apply` stores each object as JSON in an annotation, which may not exceed 256 KiB.
    for doc in objects():
        assert len(json.dumps(doc, separators=(",", ":"))) < 262144, doc["metadata"]["name"]


# ------------------------------------------------------------------------------------------ operator


def test_probes_point_at_ports_the_container_declares() -> None:
    c = operator_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert get["port"] in ports or get["port"] in ports.values(), f"{probe} port {get['port']!r}"


def config_map_references(pod: Doc) -> Iterator[tuple[str, str | None]]:
    """(ConfigMap name, key or None) for everything the pod reads from a ConfigMap."""
    spec = pod["spec"]
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                yield source["configMapRef"]["name"], None
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                yield ref["name"], ref["key"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield volume["configMap"]["name"], None


def test_every_config_map_the_operator_reads_is_installed_with_it() -> None:
    maps = named("ConfigMap")
    refs = list(config_map_references(operator_pod()))
    assert ("sluice-operator-config", None) in refs
    for name, key in refs:
        assert name in maps, f"the operator reads ConfigMap {name}, which deploy/ does not create"
        if key is not None:
            assert key in maps[name]["data"], f"ConfigMap {name} has no key {key}"


def test_the_config_map_check_finds_every_kind_of_reference() -> None:
    pod: Doc = {
        "spec": {
            "initContainers": [{"envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}]}],
            "containers": [
                {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}}]}
            ],
            "volumes": [{"name": "v", "configMap": {"name": "c"}}, {"name": "t", "emptyDir": {}}],
        }
    }
    assert list(config_map_references(pod)) == [("a", None), ("b", "k"), ("c", None)]


def test_the_operator_runs_one_locked_down_replica_of_the_published_image() -> None:
    deployment = the("Deployment")
    assert deployment["metadata"]["name"] == "sluice-operator"
    assert deployment["spec"]["replicas"] == 1
    # No peering: a rolling update would run two operators at once.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    c = operator_container()
    assert c["image"] == f"{IMAGE}:0.1.0"
    assert c["args"] == ["operator"]
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator_pod()["spec"]["securityContext"]["runAsUser"] == dockerfile_uid()
    # With a read-only root filesystem, /tmp must be a volume.
    volumes = {v["name"]: v for v in operator_pod()["spec"]["volumes"]}
    (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]
    env = {e["name"]: e for e in c["env"]}
    assert env["SLUICE_EXECUTOR_IMAGE"]["value"] == c["image"]
    assert env["SLUICE_JETSTREAM_IMAGE"]["value"] == DEFAULT_JETSTREAM_IMAGE
    assert env["SLUICE_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_metrics_service_selects_the_operator_and_a_declared_port() -> None:
    service = named("Service")["sluice-operator-metrics"]
    labels = operator_pod()["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert the("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("metrics", 9090)
    assert port["targetPort"] in {p["name"] for p in operator_container()["ports"]}


SETTINGS = {
    "SLUICE_NAMESPACES": "",
    "SLUICE_API_QPS": "20",
    "SLUICE_API_BURST": "30",
    "SLUICE_POD_CREATES_PER_SECOND": "20",
    "SLUICE_WORKERS": "8",
    "SLUICE_INSTANCE_ID": "",
}


def test_every_operator_setting_is_given_and_explained_by_a_comment() -> None:
    assert named("ConfigMap")["sluice-operator-config"]["data"] == SETTINGS
    lines = (DEPLOY / "operator-config.yaml").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip().split(":")[0] in SETTINGS:
            assert lines[i - 1].strip().startswith("#"), f"no comment above {line.strip()}"


def test_the_default_artifact_repository_names_an_s3_bucket_and_its_credentials() -> None:
    cm = named("ConfigMap")["artifact-repositories"]
    key = cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    repo = yaml.safe_load(cm["data"][key])
    s3 = repo["s3"]
    assert isinstance(s3["bucket"], str) and s3["bucket"]
    assert isinstance(s3["endpoint"], str) and s3["endpoint"]
    assert isinstance(s3["insecure"], bool)
    assert s3["accessKeySecret"] == {"name": "sluice-artifacts-s3", "key": "accesskey"}
    assert s3["secretKeySecret"] == {"name": "sluice-artifacts-s3", "key": "secretkey"}


# ------------------------------------------------------------------------------------------ CRDs


def test_deploy_crds_are_what_the_models_generate() -> None:
    expected = {file_name(d): crd_text(d) for d in custom_resource_definitions()}
    committed = {p.name for p in (DEPLOY / "crds").glob("*.yaml")}
    assert committed == set(expected), "run `make crds`"
    for name, text in expected.items():
        assert (DEPLOY / "crds" / name).read_text(encoding="utf-8") == text, f"deploy/crds/{name} drifted"
    assert {f"crds/{n}" for n in expected} <= set(kustomization()["resources"])


# ------------------------------------------------------------------------------------------ Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        instruction, _, args = (logical + line).partition(" ")
        logical = ""
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def dockerfile_uid() -> int:
    (user,) = [args for op, args in dockerfile_stages()[-1] if op == "USER"]
    return int(user.split(":")[0])


def compile_command() -> list[str]:
    """The gcc command line the builder stage compiles sluice-run with."""
    runs = [args for stage in dockerfile_stages()[:-1] for op, args in stage if op == "RUN"]
    commands = [shlex.split(part) for run in runs for part in run.split("&&")]
    (gcc,) = [c for c in commands if c and c[0] == "gcc" and any(a.endswith("sluice-run.c") for a in c)]
    return gcc


def test_the_final_stage_is_a_slim_python_that_runs_sluice_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    base = final[0][1]
    assert base.startswith("python:3.11-slim"), base
    users = [args for op, args in final if op == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets runAsNonRoot verify it"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert [op for op, _ in final].index("USER") > max(i for i, (op, _) in enumerate(final) if op == "RUN")
    assert ("ENTRYPOINT", '["sluice"]') in final
    assert ("CMD", '["operator"]') in final


def test_the_final_stage_installs_the_wheel_without_compiler_or_cache() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    runs = " ".join(args for op, args in stages[-1] if op == "RUN")
    assert "pip install" in runs and "--no-cache-dir" in runs and ".whl" in runs
    assert not any(tool in runs.split() for tool in ("gcc", "cc", "build-essential", "libc6-dev"))
    # The one system package of the final image is git (trigger sources in git repositories), with no
    # recommended packages and no package lists left behind.
    installs = [r for op, r in stages[-1] if op == "RUN" and "apt-get install" in r]
    assert [i.split("--no-install-recommends", 1)[1].split("&&")[0].split() for i in installs] == [["git"]]
    assert all("rm -rf /var/lib/apt/lists/*" in i for i in installs)
    copies = [args for op, args in stages[-1] if op == "COPY"]
    assert any(c.split()[-1] == "/usr/local/bin/sluice-run" and "--from=" in c for c in copies)


def test_sluice_run_is_compiled_statically_in_the_builder() -> None:
    gcc = compile_command()
    assert "-static" in gcc
    assert "-O2" in gcc


def elf_interpreter(path: Path) -> bool:
    """Whether a 64-bit little-endian ELF file asks for a dynamic loader (has a PT_INTERP header)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not an ELF64 little-endian file"
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def test_the_builders_compile_command_yields_a_program_that_needs_no_loader(tmp_path: Path) -> None:
    gcc = compile_command()
    if shutil.which(gcc[0]) is None:
        reason = f"{gcc[0]} is not installed here; the image build compiles sluice-run"
        print(reason)
        pytest.skip(reason)

    def build(argv: list[str], out: Path) -> subprocess.CompletedProcess[str]:
        argv = [str(out) if prev == "-o" else a for prev, a in zip(["", *argv[:-1]], argv, strict=True)]
        argv = [str(SLUICE_RUN_SOURCE) if a.endswith("sluice-run.c") else a for a in argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    res = build(gcc, tmp_path / "static")
    if res.returncode != 0 and "cannot find -lc" in res.stderr:
        reason = "no static C library here (Debian: libc6-dev); the image's builder installs it"
        print(reason)
        pytest.skip(reason)
    assert res.returncode == 0, res.stderr
    assert not elf_interpreter(tmp_path / "static")
    # It runs: with no command it stops with its own usage error, not a loader error.
    ran = subprocess.run([str(tmp_path / "static")], capture_output=True, text=True, check=False)
    assert ran.stderr.startswith("sluice-run: "), ran.stderr
    # The same program linked dynamically does ask for a loader: the check can tell them apart.
    assert build([a for a in gcc if a != "-static"], tmp_path / "dynamic").returncode == 0
    assert elf_interpreter(tmp_path / "dynamic")


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps PATH (or a directory above it) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, p) for c in candidates):
            verdict = not negate
    return verdict


def test_the_build_context_keeps_what_the_dockerfile_copies_and_drops_local_state() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    sources = [
        src
        for stage in dockerfile_stages()
        for op, args in stage
        if op == "COPY" and "--from=" not in args
        for src in args.split()[:-1]
    ]
    assert "engine" in sources
    for src in sources:
        assert not ignored(src, patterns), f"{src} is copied by the Dockerfile but excluded by .dockerignore"
    for local in (".venv", ".git", ".mypy_cache", "engine/spec/__pycache__", "tests", "sluicegate.egg-info"):
        assert ignored(local, patterns), f"{local} should stay out of the build context"


# ------------------------------------------------------------------------------------------ rendering


def kustomize(directory: Path) -> list[Doc]:
    if shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        argv = ["kustomize", "build", str(directory)]
    else:
        reason = "neither kubectl nor kustomize is installed, so deploy/ is not rendered here"
        print(reason)
        pytest.skip(reason)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d is not None]


def test_the_kustomization_renders_the_operator_into_its_namespace() -> None:
    rendered = kustomize(DEPLOY)
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(d["kind"] for d in objects())
    assert len(named("CustomResourceDefinition", rendered)) == len(custom_resource_definitions())
    for doc in rendered:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == NAMESPACE
    assert [p for d in rendered for p in rbac_wildcards(d)] == []
    (subject,) = named("ClusterRoleBinding", rendered)["sluice-operator"]["subjects"]
    assert subject["namespace"] == NAMESPACE
    assert operator_container(rendered)["image"] == f"{IMAGE}:0.1.0"


def test_retagging_in_an_overlay_moves_the_operator_and_executor_image_together(tmp_path: Path) -> None:
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, tmp_path)],
        "images": [{"name": IMAGE, "newName": "registry.example/sluicegate", "newTag": "1.2.3"}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    c = operator_container(kustomize(tmp_path))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["image"] == env["SLUICE_EXECUTOR_IMAGE"] == "registry.example/sluicegate:1.2.3"


def test_an_overlay_can_move_the_jetstream_image_to_a_mirror(tmp_path: Path) -> None:
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, tmp_path)],
        "images": [{"name": "nats", "newName": "mirror.example/nats"}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    env = {e["name"]: e.get("value") for e in operator_container(kustomize(tmp_path))["env"]}
    assert env["SLUICE_JETSTREAM_IMAGE"] == "mirror.example/nats:2.10-alpine"
