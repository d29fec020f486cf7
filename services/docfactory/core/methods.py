"""Full gRPC method names ("/package.Service/Method") taken from the generated descriptors,
so a renamed or removed RPC fails at import instead of silently matching nothing."""

from __future__ import annotations

from google.protobuf.descriptor import FileDescriptor


def method_names(file: FileDescriptor, service: str, *methods: str) -> frozenset[str]:
    """The full names of ``methods`` of ``service`` declared in ``file`` (a generated
    ``*_pb2.DESCRIPTOR``); a KeyError names the service or method the proto lacks."""
    svc = file.services_by_name[service]
    return frozenset(f"/{svc.full_name}/{svc.methods_by_name[m].name}" for m in methods)
