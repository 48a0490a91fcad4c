"""The generated protobuf modules must match proto/*.proto (regenerate: python -m sds.proto.build)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_are_fresh():
    result = subprocess.run([sys.executable, "-m", "sds.proto.build", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_proto_has_a_generated_module():
    protos = {p.stem for p in (ROOT / "proto").glob("*.proto")}
    generated = {p.name.removesuffix("_pb2.py") for p in (ROOT / "sds" / "proto").glob("*_pb2.py")}
    assert protos <= generated
