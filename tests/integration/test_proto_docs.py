"""Every service, RPC, message, field, enum and enum value in proto/ carries a comment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"

# Source-location path numbers from descriptor.proto.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MSG_FIELD, MSG_NESTED, MSG_ENUM, MSG_ONEOF = 2, 3, 4, 8
ENUM_VALUE, SERVICE_METHOD = 2, 2


def _descriptors(tmp: Path) -> descriptor_pb2.FileDescriptorSet:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    out = tmp / "set.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ],
        check=True,
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _elements(f: descriptor_pb2.FileDescriptorProto) -> list[tuple[tuple[int, ...], str]]:
    found: list[tuple[tuple[int, ...], str]] = []

    def enum(path: tuple[int, ...], e: descriptor_pb2.EnumDescriptorProto, prefix: str) -> None:
        found.append((path, f"{prefix}{e.name}"))
        for i, v in enumerate(e.value):
            found.append(((*path, ENUM_VALUE, i), f"{prefix}{e.name}.{v.name}"))

    def message(path: tuple[int, ...], m: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = f"{prefix}{m.name}"
        found.append((path, name))
        for i, field in enumerate(m.field):
            found.append(((*path, MSG_FIELD, i), f"{name}.{field.name}"))
        for i, oneof in enumerate(m.oneof_decl):
            if not oneof.name.startswith("_"):  # synthetic oneofs of `optional` fields
                found.append(((*path, MSG_ONEOF, i), f"{name}.{oneof.name}"))
        for i, nested in enumerate(m.nested_type):
            if not nested.options.map_entry:
                message((*path, MSG_NESTED, i), nested, f"{name}.")
        for i, e in enumerate(m.enum_type):
            enum((*path, MSG_ENUM, i), e, f"{name}.")

    for i, m in enumerate(f.message_type):
        message((FILE_MESSAGE, i), m, "")
    for i, e in enumerate(f.enum_type):
        enum((FILE_ENUM, i), e, "")
    for i, s in enumerate(f.service):
        found.append(((FILE_SERVICE, i), s.name))
        for j, method in enumerate(s.method):
            found.append(((FILE_SERVICE, i, SERVICE_METHOD, j), f"{s.name}.{method.name}"))
    return found


def test_every_proto_element_is_commented(tmp_path: Path) -> None:
    undocumented = []
    for f in _descriptors(tmp_path).file:
        if not f.name.startswith("aigc/"):
            continue
        comments = {
            tuple(loc.path): (loc.leading_comments + loc.trailing_comments).strip()
            for loc in f.source_code_info.location
        }
        undocumented += [f"{f.name}: {name}" for path, name in _elements(f) if not comments.get(path)]
    assert undocumented == []


def test_enum_zero_values_are_unspecified(tmp_path: Path) -> None:
    for f in _descriptors(tmp_path).file:
        for e in f.enum_type:
            assert e.value[0].number == 0 and e.value[0].name.endswith("_UNSPECIFIED"), f"{f.name}: {e.name}"
