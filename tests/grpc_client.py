"""A gRPC client nobody on the driftwatch team wrote: Python's grpcio, with the services and
messages learned at run time through server reflection (no generated code, no .proto files).

Usage: grpc_client.py HOST:PORT HOST_ID
Prints a line `{"watching": true}` once it follows the host's live feed (Watch), then, after the
next drift event arrives, one JSON object: the services listed, the health statuses, the
ListHosts / GetHost answers and that event, all as protobuf's JSON mapping of the typed
messages. Exits non-zero on any failure.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def unary(channel, pool, service, method_name):
    method = pool.FindServiceByName(service).FindMethodByName(method_name)
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{service}/{method_name}",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )
    return request, call


def main():
    target, host = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)

    health = health_pb2_grpc.HealthStub(channel)
    statuses = {}
    for service in ["", "driftwatch.v1.Fleet", "driftwatch.v1.Ingest"]:
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        statuses[service or "(server)"] = health_pb2.HealthCheckResponse.ServingStatus.Name(
            reply.status
        )

    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)

    request, list_hosts = unary(channel, pool, "driftwatch.v1.Fleet", "ListHosts")
    hosts = MessageToDict(list_hosts(request(diverged=False), timeout=10),
                          preserving_proto_field_name=True)
    request, get_host = unary(channel, pool, "driftwatch.v1.Fleet", "GetHost")
    detail = MessageToDict(get_host(request(host=host), timeout=10),
                           preserving_proto_field_name=True)

    watch = pool.FindServiceByName("driftwatch.v1.Fleet").FindMethodByName("Watch")
    watch_request = message_factory.GetMessageClass(watch.input_type)
    event_class = message_factory.GetMessageClass(watch.output_type)
    feed = channel.unary_stream(
        "/driftwatch.v1.Fleet/Watch",
        request_serializer=watch_request.SerializeToString,
        response_deserializer=event_class.FromString,
    )(watch_request(host=host), timeout=60)
    # The server sends response headers when the stream starts: then it is following.
    feed.initial_metadata()
    print(json.dumps({"watching": True}), flush=True)
    event = MessageToDict(next(feed), preserving_proto_field_name=True)
    feed.cancel()
    print(json.dumps({"services": services, "health": statuses, "hosts": hosts,
                      "host": detail, "event": event}))


if __name__ == "__main__":
    main()
