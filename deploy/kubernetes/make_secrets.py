"""Make the keys of a new SDS cluster on Kubernetes, as the Secrets the manifests mount:

    .venv/bin/python deploy/kubernetes/make_secrets.py --admin-keyring admin.keyring \\
        [--osds 3] [--mds a,b] [--mgr x] [--namespace sds] \\
        [--pools sdsfs_metadata,sdsfs_data] > secrets.yaml
    kubectl apply -f secrets.yaml      # before 20-daemons.yaml

Each pod gets only what it needs: the mons the genesis keyring (every entity: the
monitors build the auth database from it on first start), each OSD, MDS and mgr pod the
keyrings of its own role, the CSI plugin client.csi (profile csi, OSD access limited to
the filesystem's pools). client.admin's keyring is written to --admin-keyring (0600) for
the admin's `sds` CLI and is in no Secret but the mons' one.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys

import yaml

from sds.cluster.local import csi_caps, genesis_keyring

LABELS = {"app.kubernetes.io/part-of": "sds"}
# secret name -> (role of the entities it holds, mounted by)
MON_SECRET, CSI_SECRET = "sds-mon-keyring", "sds-csi-secret"
ROLE_SECRETS = {"osd": "sds-osd-keys", "mds": "sds-mds-keys", "mgr": "sds-mgr-keys"}


def secret(name: str, namespace: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
            "stringData": data}


def make(osds: int, mds_ids: list[str], mgrs: list[str], namespace: str,
         pools: list[str]) -> tuple[list[dict], str]:
    """(the Secrets, client.admin's keyring text) of a fresh cluster."""
    keyring = genesis_keyring(osds, mgrs, mds_ids, csi_caps(pools))
    docs = [secret(MON_SECRET, namespace, {"keyring": keyring.text()})]
    for role, name in ROLE_SECRETS.items():
        entities = [e for e in keyring.entries if e.startswith(f"{role}.")]
        docs.append(secret(name, namespace, {f"{e}.keyring": keyring.only(e).text()
                                             for e in entities}))
    csi_key = base64.b64encode(keyring.key_of("client.csi")).decode()
    docs.append(secret(CSI_SECRET, namespace, {
        "userID": "csi", "userKey": csi_key, "keyring": keyring.only("client.csi").text()}))
    return docs, keyring.only("client.admin").text()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--osds", type=int, default=3)
    ap.add_argument("--mds", default="a,b", help="MDS ids, comma-separated")
    ap.add_argument("--mgr", default="x", help="mgr ids, comma-separated")
    ap.add_argument("--namespace", default="sds")
    ap.add_argument("--pools", default="sdsfs_metadata,sdsfs_data",
                    help="the pools the CSI key may use (the filesystem's)")
    ap.add_argument("--admin-keyring", required=True, help="where to write client.admin's")
    a = ap.parse_args(argv)
    docs, admin = make(a.osds, [m for m in a.mds.split(",") if m],
                       [m for m in a.mgr.split(",") if m], a.namespace,
                       [p for p in a.pools.split(",") if p])
    fd = os.open(a.admin_keyring, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(admin)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
