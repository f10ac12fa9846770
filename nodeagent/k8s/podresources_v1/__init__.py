"""The kubelet's podresources v1 API, generated from upstream's api.proto (k8s.io/kubelet/pkg/apis/podresources/v1).

``api.proto`` is the upstream file, unchanged (kubernetes/kubelet 63b3249724f7d89a8aa48f9acb3811f193c9aa68).
``api_pb2.py`` and ``api_pb2_grpc.py`` are generated from it, from the repository root, with grpcio-tools 1.85.1::

    python3 -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. nodeagent/k8s/podresources_v1/api.proto

Import these modules only where gRPC is used (they import ``grpc``, an optional dependency).
"""
