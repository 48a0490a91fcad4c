"""Regenerate the protobuf modules in sds/proto/ from proto/*.proto.

Run `python -m sds.proto.build`; `--check` exits 1 when the committed modules are stale.
The generated imports are rewritten to package-relative ones so the modules live in sds.proto.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUT_DIR = Path(__file__).resolve().parent
GRPC_PROTOS = {"csi.proto"}


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out_dir}"]
    rc = protoc.main(args + [str(p) for p in protos])
    # gRPC service stubs only where the services are served with grpc (CSI); the others
    # travel over the messenger
    grpc_protos = [str(p) for p in protos if p.name in GRPC_PROTOS]
    if rc == 0 and grpc_protos:
        rc = protoc.main(args[:3] + [f"--grpc_python_out={out_dir}"] + grpc_protos)
    if rc != 0:
        raise SystemExit(f"protoc failed with {rc}")
    generated = sorted(out_dir.glob("*_pb2*.py"))
    for path in generated:
        text = path.read_text()
        text = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
        path.write_text(text)
    return generated


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = {p.name: p.read_text() for p in generate(Path(tmp))}
        current = {p.name: p.read_text() for p in OUT_DIR.glob("*_pb2*.py")}
        if fresh != current:
            stale = sorted(set(fresh) ^ set(current) | {n for n in fresh if fresh[n] != current.get(n)})
            print("stale generated protobuf modules:", ", ".join(stale))
            return 1
        print("generated protobuf modules are up to date")
        return 0
    for path in generate(OUT_DIR):
        print("wrote", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
