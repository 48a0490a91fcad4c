"""deploy/kubernetes/ is what an admin applies: every manifest must validate against the
Kubernetes schemas of a stated version (offline, kubernetes-validate), and the manifests
must agree with each other and with the plugin (driver name, labels and selectors, service
accounts in RBAC subjects, socket paths, images, StorageClass parameters, secrets)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate")

from sds.csi import DRIVER_NAME  # noqa: E402
from sds.csi.controller import KNOWN, SIDECAR_PREFIX  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
CRD_GROUPS = {"snapshot.storage.k8s.io"}  # CRDs of the snapshot controller: checked by hand
IMAGE = "sds:0.1.0"


def documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


DOCS = documents()


def of_kind(kind: str) -> list[dict]:
    return [d for _, d in DOCS if d["kind"] == kind]


def named(kind: str, name: str) -> dict:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def workloads() -> list[dict]:
    return [d for _, d in DOCS if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def containers(w: dict) -> list[dict]:
    return w["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("name,doc", DOCS, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}"
                                               for n, d in DOCS])
def test_validates_against_the_kubernetes_schema(name, doc):
    if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
        assert doc["kind"] == "VolumeSnapshotClass" and doc["apiVersion"].endswith("/v1")
        assert set(doc) <= {"apiVersion", "kind", "metadata", "driver", "deletionPolicy",
                            "parameters"}
        assert doc["deletionPolicy"] in ("Delete", "Retain")
        return
    kv.validate(doc, K8S_VERSION, strict=True)


def test_driver_name_everywhere():
    assert named("CSIDriver", DRIVER_NAME)["spec"]["attachRequired"] is False
    assert named("CSIDriver", DRIVER_NAME)["spec"]["fsGroupPolicy"] == "File"
    assert {sc["provisioner"] for sc in of_kind("StorageClass")} == {DRIVER_NAME}
    assert {c["driver"] for c in of_kind("VolumeSnapshotClass")} == {DRIVER_NAME}


def test_selectors_match_template_labels_and_services():
    for w in workloads():
        labels = w["spec"]["template"]["metadata"]["labels"]
        for k, v in w["spec"]["selector"]["matchLabels"].items():
            assert labels.get(k) == v, w["metadata"]["name"]
        if w["kind"] == "StatefulSet":
            svc = named("Service", w["spec"]["serviceName"])
            assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())


def test_service_accounts_are_bound():
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"])
                for a in of_kind("ServiceAccount")}
    subjects = {(s["namespace"], s["name"]) for kind in ("ClusterRoleBinding", "RoleBinding")
                for b in of_kind(kind) for s in b["subjects"] if s["kind"] == "ServiceAccount"}
    roles = {(r["kind"], r["metadata"]["name"]) for kind in ("ClusterRole", "Role")
             for r in of_kind(kind)}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in of_kind(kind):
            assert (b["roleRef"]["kind"], b["roleRef"]["name"]) in roles
    for w in workloads():
        sa = w["spec"]["template"]["spec"].get("serviceAccountName")
        if sa:
            assert (w["metadata"]["namespace"], sa) in accounts & subjects, sa


def _arg(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def test_socket_paths_agree():
    for w in (named("Deployment", "sds-csi-controller"), named("DaemonSet", "sds-csi-node")):
        plugin = next(c for c in containers(w) if c["name"] == "sds-csi")
        endpoint = _arg(plugin["args"], "--endpoint")
        assert endpoint.startswith("unix://")
        sock = endpoint[len("unix://"):]
        mounts = {m["name"]: m["mountPath"] for m in plugin["volumeMounts"]}
        for c in containers(w):
            if c is plugin:
                continue
            addr = _arg(c["args"], "--csi-address")
            assert addr == sock, c["name"]
            theirs = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            shared = [n for n in theirs if theirs[n] == mounts.get(n)]
            assert any(sock.startswith(theirs[n]) for n in shared), c["name"]
    node = named("DaemonSet", "sds-csi-node")
    registrar = next(c for c in containers(node) if c["name"] == "node-driver-registrar")
    reg_path = _arg(registrar["args"], "--kubelet-registration-path")
    plugin_dir = next(v for v in node["spec"]["template"]["spec"]["volumes"]
                      if v["name"] == "plugin-dir")["hostPath"]["path"]
    assert reg_path == f"{plugin_dir}/csi.sock" and DRIVER_NAME in plugin_dir
    plugin = next(c for c in containers(node) if c["name"] == "sds-csi")
    assert plugin["securityContext"]["privileged"] is True
    assert any(m.get("mountPropagation") == "Bidirectional" for m in plugin["volumeMounts"])
    assert any(m["mountPath"] == "/dev/fuse" for m in plugin["volumeMounts"])


def test_sidecars_and_images():
    ctrl = {c["name"]: c for c in containers(named("Deployment", "sds-csi-controller"))}
    assert {"csi-provisioner", "csi-resizer", "csi-snapshotter", "liveness-probe"} <= set(ctrl)
    assert "--extra-create-metadata" in ctrl["csi-provisioner"]["args"]
    for w in workloads():
        for c in containers(w):
            if c["image"].startswith("registry.k8s.io/sig-storage/"):
                continue
            assert c["image"] == IMAGE, (w["metadata"]["name"], c["name"])
    assert (DEPLOY / "Containerfile").read_text().count("ENTRYPOINT") == 1


def test_plugin_arguments_parse_as_the_cli_expects():
    from sds.cli.main import build_parser

    for w in (named("Deployment", "sds-csi-controller"), named("DaemonSet", "sds-csi-node")):
        plugin = next(c for c in containers(w) if c["name"] == "sds-csi")
        args = build_parser().parse_args(plugin["args"])
        assert args.endpoint and args.node_id and args.name == "client.csi", shlex.join(
            plugin["args"])


def test_storageclass_parameters_and_secrets():
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in of_kind("Secret")}
    for sc in of_kind("StorageClass") + of_kind("VolumeSnapshotClass"):
        params = sc.get("parameters", {})
        for key in params:
            assert key in KNOWN or key.startswith(SIDECAR_PREFIX), key
        for key, name in params.items():
            if key.endswith("-secret-name"):
                ns = params[key.replace("-secret-name", "-secret-namespace")]
                secret = secrets[(ns, name)]
                assert {"userID", "userKey"} <= set(secret["stringData"])
    conf = named("ConfigMap", "sds-conf")["data"]["sds.conf"]
    assert "[global]" in conf and "mon_host" in conf
    mons = named("StatefulSet", "sds-mon")["spec"]["replicas"]
    assert all(f"[mon.{i}]" in conf for i in range(mons))


# -- the SDS daemons on Kubernetes --------------------------------------------------------
def _conf() -> dict[str, str]:
    """[global] of the ConfigMap's sds.conf."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(named("ConfigMap", "sds-conf")["data"]["sds.conf"])
    return dict(parser["global"])


def _stable_names(sts: dict, count: int) -> list[str]:
    """host:port of the first COUNT pods of a StatefulSet under its headless Service."""
    ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
    svc = named("Service", sts["spec"]["serviceName"])
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"].get("publishNotReadyAddresses")
    (port,) = svc["spec"]["ports"]
    (container,) = containers(sts)
    assert port["targetPort"] in [p["containerPort"] for p in container["ports"]]
    return [f"{name}-{i}.{svc['metadata']['name']}.{ns}.svc:{port['port']}"
            for i in range(count)]


def test_mons_and_mgr_are_addressed_by_their_stable_dns_names():
    mons = named("StatefulSet", "sds-mon")
    assert _conf()["mon_host"].split(",") == _stable_names(mons, mons["spec"]["replicas"])
    mgr = named("StatefulSet", "sds-mgr")
    assert mgr["spec"]["replicas"] == 1
    assert _conf()["mgr_addr"] == _stable_names(mgr, 1)[0]  # OSDs report to it


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_osds_and_mdss_listen_on_their_pod_ip():
    """They announce the address they listen on in the maps: the default 127.0.0.1 would
    be unreachable from every other pod."""
    for name in ("sds-osd", "sds-mds"):
        (c,) = containers(named("StatefulSet", name))
        env = _env(c)
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        host, port = env["SDS_ADDR"]["value"].rsplit(":", 1)
        assert host == "$(POD_IP)" and int(port) in [p["containerPort"] for p in c["ports"]]
    (osd,) = containers(named("StatefulSet", "sds-osd"))
    assert _env(osd)["SDS_OSD_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def _make_secrets():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_secrets", DEPLOY / "make_secrets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _secret_of(w: dict) -> str:
    (vol,) = [v for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == "keys"]
    return vol["secret"]["secretName"]


def test_each_daemon_pod_holds_only_its_roles_keys():
    ms = _make_secrets()
    mons = named("StatefulSet", "sds-mon")
    assert _secret_of(mons) == ms.MON_SECRET
    for role, secret in ms.ROLE_SECRETS.items():
        w = named("StatefulSet", f"sds-{role}")
        assert _secret_of(w) == secret
        (c,) = containers(w)
        text = " ".join(c.get("command", [])) + " ".join(
            e.get("value", "") for e in c.get("env", []))
        assert f"/etc/sds/keys/{role}." in text and ".keyring" in text  # SDS_KEYRING: its own
    holders = [w["metadata"]["name"] for w in workloads() if any(
        v.get("secret", {}).get("secretName") == ms.MON_SECRET
        for v in w["spec"]["template"]["spec"].get("volumes", []))]
    assert holders == ["sds-mon"]  # the genesis keyring (client.admin's key) nowhere else


def test_make_secrets_makes_what_the_manifests_mount(tmp_path):
    """The generator's Secrets validate, carry the names and keys the placeholders in
    10-config.yaml have, one entity per daemon keyring, and the CSI key's caps are
    profile csi limited to the filesystem's pools, with nothing for the mgr."""
    import base64
    import configparser
    import contextlib
    import io

    from sds.cluster.local import csi_caps

    ms = _make_secrets()
    pools = ["sdsfs_metadata", "sdsfs_data"]
    docs, admin = ms.make(3, ["a", "b"], ["x"], "sds", pools)
    placeholders = {d["metadata"]["name"]: set(d["stringData"]) for d in of_kind("Secret")}
    assert {d["metadata"]["name"]: set(d["stringData"]) for d in docs} == placeholders

    def keyring(text: str) -> configparser.ConfigParser:
        p = configparser.ConfigParser(interpolation=None)
        p.read_string(text)
        return p

    for d in docs:
        kv.validate(d, K8S_VERSION, strict=True)
        name, data = d["metadata"]["name"], d["stringData"]
        if name in ms.ROLE_SECRETS.values():
            for file, text in data.items():
                assert keyring(text).sections() == [file.removesuffix(".keyring")]
    genesis = keyring(next(d for d in docs if d["metadata"]["name"] == ms.MON_SECRET)
                      ["stringData"]["keyring"])
    assert set(genesis.sections()) == {"mon.", "client.admin", "client.csi", "osd.0", "osd.1",
                                       "osd.2", "mds.a", "mds.b", "mgr.x"}
    csi = next(d for d in docs if d["metadata"]["name"] == ms.CSI_SECRET)["stringData"]
    own = keyring(csi["keyring"])
    assert own.sections() == ["client.csi"]
    assert {k[5:]: v for k, v in own["client.csi"].items() if k.startswith("caps ")} == \
        csi_caps(pools) and "mgr" not in csi_caps(pools)
    assert csi["userKey"] == own["client.csi"]["key"]
    base64.b64decode(csi["userKey"], validate=True)
    assert keyring(admin).sections() == ["client.admin"]
    assert admin.split("key = ")[1].split()[0] == genesis["client.admin"]["key"]
    out = tmp_path / "admin.keyring"  # the command line: YAML out, admin keyring 0600
    with contextlib.redirect_stdout(io.StringIO()) as text:
        assert ms.main(["--admin-keyring", str(out)]) == 0
    assert len(list(yaml.safe_load_all(text.getvalue()))) == len(docs)
    assert out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):  # never overwrites an admin keyring
        ms.main(["--admin-keyring", str(out)])
