#!/usr/bin/env python3
"""The Helm chart (deploy/helm/coolmesh) and the Dockerfile, without a
cluster or a Docker daemon (neither is on the CI machine):

- `helm lint --strict` through Helm's own Go SDK (helm-python-sdk), and the
  chart rendered offline for several sets of values;
- every rendered core object (DaemonSet, Service, ConfigMap, Secret) against
  the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
  fields fail); the Prometheus Operator's ServiceMonitor and PrometheusRule,
  whose schemas are not packaged, by their required fields;
- what the objects mean for coolmesh: the DaemonSet's flags exist in
  `coolmesh agent --help`, its ports are the agent's, the ConfigMap's TOML
  passes `coolmesh check-config --syntax-only`, the PrometheusRule holds
  exactly the groups of alerts/ and passes `promtool check rules`, the
  ServiceMonitor's job label matches the rules' job=~"coolmesh.*";
- the Dockerfile: multi-stage, the final stage non-root, the binary copied
  from where cargo puts it, the default port exposed, a Rust at least the
  crate's rust-version.

    check-helm.py COOLMESH_BIN
Prints one "helm: ok: ..." line per check, then "N passed, 0 failed".
"""
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy/helm/coolmesh"
K8S_VERSION = "1.30"
SECRET = {"token": "ab" * 32, "swarmKey": "/key/swarm/psk/1.0.0/\n/base16/\n" + "cd" * 32}

passed = 0


def ok(msg):
    global passed
    passed += 1
    print(f"helm: ok: {msg}", flush=True)


def fail(msg):
    print(f"helm: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def default_port():
    m = re.search(r"pub const DEFAULT_HTTP_PORT: u16 = (\d+);", (ROOT / "agent/src/config/mod.rs").read_text())
    if not m:
        fail("DEFAULT_HTTP_PORT not found in agent/src/config/mod.rs")
    return int(m.group(1))


def render(values, name="coolmesh", namespace="coolmesh"):
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=name, namespace=namespace, is_install=True)
    objs = []
    for path, text in sorted(out.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for d in yaml.safe_load_all(text):
            if d is not None:
                objs.append((path, d))
    return objs


def by_kind(objs):
    kinds = {}
    for _, d in objs:
        kinds.setdefault(d["kind"], []).append(d)
    return kinds


def check_lint():
    for label, values in [("defaults", {"secret": SECRET}),
                          ("everything on", {"secret": SECRET, "serviceMonitor": {"enabled": True},
                                             "prometheusRule": {"enabled": True}})]:
        r = helm.lint(str(CHART), values, strict=True, kube_version=f"v{K8S_VERSION}.0")
        bad = [m for m in r["messages"] if m["severity"] >= 2] + [{"error": e} for e in r.get("errors", [])]
        if bad:
            fail(f"helm lint --strict ({label}): {bad}")
        infos = "; ".join(m["error"] for m in r["messages"])
        ok(f"helm lint --strict ({label}), Helm SDK {helm.helm_sdk_version()}" + (f" (info: {infos})" if infos else ""))


def check_schemas(objs):
    core = {"DaemonSet", "Service", "ConfigMap", "Secret"}
    for path, d in objs:
        if d["kind"] in core:
            try:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{path}: {d['kind']} does not match the Kubernetes {K8S_VERSION} schema: {e.message} at {list(e.path)}")
        for k in ("apiVersion", "kind"):
            if k not in d:
                fail(f"{path}: no {k}")
        if not d.get("metadata", {}).get("name"):
            fail(f"{path}: {d['kind']} without metadata.name")
    ok(f"{', '.join(sorted({d['kind'] for _, d in objs}))} render; core objects match the Kubernetes {K8S_VERSION} schemas (strict)")


def check_daemonset(kinds, bin_path, port):
    ds = kinds["DaemonSet"][0]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    if ds["spec"]["selector"]["matchLabels"].items() - ds["spec"]["template"]["metadata"]["labels"].items():
        fail("the DaemonSet's selector does not match its pod labels")
    if pod.get("hostNetwork") is not True:
        fail("the DaemonSet must use hostNetwork (mDNS, probes from the node's address)")
    help_text = subprocess.run([bin_path, "agent", "--help"], capture_output=True, text=True, check=True).stdout
    for a in c["args"][1:]:
        flag = a.split("=", 1)[0]
        if not re.search(rf"(^|\s){re.escape(flag)}[\s=,]", help_text):
            fail(f"the DaemonSet passes {flag}, which `coolmesh agent --help` does not list")
    if c["args"][0] != "agent":
        fail(f"the container runs {c['args'][0]!r}, not the agent")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("http-metrics") != port or f"--web.listen-address=:{port}" not in c["args"]:
        fail(f"the HTTP port is not the agent's default {port}: {ports}, {c['args']}")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    if not mounts["/host/sys"].get("readOnly"):
        fail("/sys must be mounted read-only")
    sc = c["securityContext"]
    if sc["capabilities"]["drop"] != ["ALL"] or sc["capabilities"]["add"] != ["NET_RAW"]:
        fail(f"capabilities: {sc['capabilities']}, want drop ALL, add NET_RAW")
    if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
        fail("the container must not escalate and must have a read-only root")
    vols = {v["name"]: v for v in pod["volumes"]}
    if vols["state"]["hostPath"]["path"] != "/var/lib/coolmesh":
        fail("the state directory is not the node's /var/lib/coolmesh")
    ok(f"DaemonSet: every flag exists in `coolmesh agent --help`, HTTP on {port}, /sys read-only, only NET_RAW")
    return ds


def check_config(kinds, bin_path, tmp):
    toml = kinds["ConfigMap"][0]["data"]["coolmesh.toml"]
    f = tmp / "chart.toml"
    f.write_text(toml)
    r = subprocess.run([bin_path, "check-config", "--syntax-only", str(f)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"the chart's coolmesh.toml fails check-config --syntax-only:\n{r.stdout}{r.stderr}")
    if 'token_file = "/etc/coolmesh/secret/token"' not in toml:
        fail("the chart's config does not name the mounted token")
    ok("ConfigMap: coolmesh.toml passes `coolmesh check-config --syntax-only` and names the mounted token")


def check_monitoring(kinds, tmp):
    sm = kinds["ServiceMonitor"][0]
    svc = kinds["Service"][0]
    ep = sm["spec"]["endpoints"][0]
    if ep["port"] not in {p["name"] for p in svc["spec"]["ports"]}:
        fail(f"the ServiceMonitor scrapes port {ep['port']}, which the Service does not have")
    if sm["spec"]["selector"]["matchLabels"].items() - svc["metadata"]["labels"].items():
        fail("the ServiceMonitor's selector does not select the Service")
    job = svc["metadata"]["labels"].get(sm["spec"]["jobLabel"])
    if not job or not re.fullmatch("coolmesh.*", job):
        fail(f"job label {job!r} (from {sm['spec']['jobLabel']}) would not match the rules' job=~\"coolmesh.*\"")
    ok(f"ServiceMonitor: selects the Service, scrapes {ep['port']}, job={job} matches the rules")

    pr = kinds["PrometheusRule"][0]
    groups = pr["spec"]["groups"]
    want = []
    for name in ("coolmesh.rules.yml", "coolmesh.recording.yml"):
        want += yaml.safe_load((ROOT / "alerts" / name).read_text())["groups"]
    if groups != want:
        fail("the PrometheusRule's groups differ from alerts/*.yml: run deploy/helm/generate-rules.py")
    rules = tmp / "prometheusrule.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"promtool check rules on the PrometheusRule:\n{r.stdout}{r.stderr}")
        ok(f"PrometheusRule: the {len(groups)} groups of alerts/, `promtool check rules` passes")
    else:
        ok(f"PrometheusRule: the {len(groups)} groups of alerts/ (promtool not installed: not run)")


def check_values_variants(port):
    # An existing Secret: the chart makes none and mounts that one.
    kinds = by_kind(render({"secret": {"existingSecret": "room-keys"}}))
    if "Secret" in kinds:
        fail("with secret.existingSecret the chart still creates a Secret")
    vols = {v["name"]: v for v in kinds["DaemonSet"][0]["spec"]["template"]["spec"]["volumes"]}
    if vols["secret"]["secret"]["secretName"] != "room-keys":
        fail("the existing Secret is not the one mounted")
    # Without a key the install must stop with the reason, not start agents
    # that refuse to run.
    try:
        render({})
        fail("the chart rendered without a token and cluster key")
    except helm.HelmError as e:
        if "secret.token and secret.swarmKey are required" not in str(e):
            fail(f"rendering without a secret failed for another reason: {e}")
    # No D-Bus, another release name and port.
    kinds = by_kind(render({"secret": SECRET, "hostDBus": False, "httpPort": 9876}, name="room2"))
    ds = kinds["DaemonSet"][0]
    if any(v["name"] == "dbus" for v in ds["spec"]["template"]["spec"]["volumes"]):
        fail("hostDBus=false still mounts the D-Bus socket")
    if ds["metadata"]["name"] != "room2-coolmesh" or "--web.listen-address=:9876" not in ds["spec"]["template"]["spec"]["containers"][0]["args"]:
        fail("release name or httpPort not applied")
    # Off by default: the Prometheus Operator's kinds need its CRDs.
    if {"ServiceMonitor", "PrometheusRule"} & set(by_kind(render({"secret": SECRET}))):
        fail("ServiceMonitor or PrometheusRule rendered by default (needs the operator's CRDs)")
    ok("values: existingSecret, a missing key (refused with the reason), hostDBus=false, httpPort, release name, operator kinds off by default")


def check_dockerfile(port):
    text = (ROOT / "Dockerfile").read_text()
    lines = []
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            lines.append(s)
    stages = [l for l in lines if l.upper().startswith("FROM ")]
    if len(stages) < 2:
        fail("the Dockerfile is not multi-stage")
    build = re.match(r"FROM\s+rust:(\d+)\.(\d+)-slim-(\w+)\s+AS\s+(\w+)", stages[0], re.I)
    final = re.match(r"FROM\s+debian:(\w+)-slim$", stages[-1], re.I)
    if not build or not final:
        fail(f"stages: {stages}, want rust:X.Y-slim-RELEASE AS NAME then debian:RELEASE-slim")
    if build.group(3) != final.group(1):
        fail(f"build on {build.group(3)}, run on {final.group(1)}: the glibc must match")
    need = re.search(r'rust-version = "(\d+)\.(\d+)"', (ROOT / "Cargo.toml").read_text())
    if (int(build.group(1)), int(build.group(2))) < (int(need.group(1)), int(need.group(2))):
        fail(f"rust:{build.group(1)}.{build.group(2)} is older than rust-version {need.group(1)}.{need.group(2)}")
    tail = lines[lines.index(stages[-1]):]
    users = [l.split(None, 1)[1] for l in tail if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        fail(f"the final stage runs as root (USER {users})")
    copy = [l for l in tail if l.upper().startswith("COPY ")]
    if not any(f"--from={build.group(4)} /src/target/release/coolmesh /usr/bin/coolmesh" in l for l in copy):
        fail(f"the binary is not copied from the build stage's target/release: {copy}")
    expose = " ".join(l for l in tail if l.upper().startswith("EXPOSE "))
    if f"{port}/tcp" not in expose:
        fail(f"EXPOSE does not include the default port {port}: {expose}")
    entry = [l for l in tail if l.upper().startswith("ENTRYPOINT ")]
    if entry != ['ENTRYPOINT ["/usr/bin/coolmesh"]']:
        fail(f"ENTRYPOINT {entry}")
    ignore = (ROOT / ".dockerignore").read_text().split()
    if "target" not in ignore or ".git" not in ignore:
        fail(".dockerignore must leave target/ and .git out of the build context")
    ok(f"Dockerfile: {len(stages)} stages (rust:{build.group(1)}.{build.group(2)} on {build.group(3)}, then debian:{final.group(1)}-slim), "
       f"USER {users[-1]}, binary from the build stage, EXPOSE {port}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    bin_path = sys.argv[1]
    port = default_port()
    helm.disable_logging() if hasattr(helm, "disable_logging") else None
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        check_lint()
        objs = render({"secret": SECRET, "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
        check_schemas(objs)
        kinds = by_kind(objs)
        check_daemonset(kinds, bin_path, port)
        check_config(kinds, bin_path, tmp)
        check_monitoring(kinds, tmp)
        check_values_variants(port)
        check_dockerfile(port)
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
