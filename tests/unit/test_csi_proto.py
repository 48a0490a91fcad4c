"""Our proto/csi.proto carries the CSI v1 spec's wire facts: both files are compiled with
protoc here and compared service by service, message by message, field by field (names,
numbers, types, labels, oneofs, options), enum by enum."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
# the spec's proto lives in shared/ beside the repository (CI) or the workplace's copy
SPEC = next((p for p in (ROOT.parent / "shared" / "spec" / "csi.proto",
                         ROOT.parents[1] / "shared" / "spec" / "csi.proto",
                         Path("/work/shared/spec/csi.proto")) if p.exists()),
            Path("/work/shared/spec/csi.proto"))


def _compile(proto: Path) -> descriptor_pb2.FileDescriptorProto:
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{proto.parent}", f"-I{include}",
                          f"--descriptor_set_out={out}", str(proto)])
        assert rc == 0, f"protoc failed on {proto}"
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (fd,) = [f for f in fds.file if f.name == proto.name]
    return fd


def _fields(msg) -> dict:
    return {f.name: (f.number, f.type, f.label, f.type_name,
                     f.oneof_index if f.HasField("oneof_index") else None,
                     f.options.SerializeToString(deterministic=True)) for f in msg.field}


def _messages(msgs, prefix="") -> dict:
    out = {}
    for m in msgs:
        name = prefix + m.name
        out[name] = {"fields": _fields(m), "oneofs": [o.name for o in m.oneof_decl],
                     "options": m.options.SerializeToString(deterministic=True)}
        out.update(_messages(m.nested_type, name + "."))
        out.update({f"{name}.{e.name}": _enum(e) for e in m.enum_type})
    return out


def _enum(e) -> dict:
    return {v.name: (v.number, v.options.SerializeToString(deterministic=True))
            for v in e.value}


def _services(fd) -> dict:
    return {s.name: {m.name: (m.input_type, m.output_type, m.server_streaming,
                              m.client_streaming, m.options.SerializeToString(deterministic=True))
                     for m in s.method} for s in fd.service}


@pytest.fixture(scope="module")
def both():
    if not SPEC.exists():
        pytest.skip("the CSI spec's proto is not in shared/spec on this machine")
    return _compile(ROOT / "proto" / "csi.proto"), _compile(SPEC)


def test_package_and_imports(both):
    ours, spec = both
    assert ours.package == spec.package == "csi.v1"
    assert sorted(ours.dependency) == sorted(spec.dependency)


def test_services_and_methods(both):
    ours, spec = both
    assert _services(ours) == _services(spec)


def test_messages_field_for_field(both):
    ours, spec = both
    mine, theirs = _messages(ours.message_type), _messages(spec.message_type)
    assert sorted(mine) == sorted(theirs)
    for name in theirs:
        assert mine[name] == theirs[name], name


def test_enums_and_extensions(both):
    ours, spec = both
    assert {e.name: _enum(e) for e in ours.enum_type} == {e.name: _enum(e) for e in spec.enum_type}
    ext = lambda fd: sorted((x.name, x.number, x.extendee, x.type) for x in fd.extension)  # noqa: E731
    assert ext(ours) == ext(spec)


def test_generated_module_is_ours():
    from sds.proto import csi_pb2, csi_pb2_grpc

    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert hasattr(csi_pb2_grpc, "NodeServicer") and hasattr(csi_pb2_grpc, "ControllerStub")
