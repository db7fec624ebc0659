"""A bare grpc.aio FleetTelemetry that answers ACCEPTED at once: the gRPC ceiling."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import grpc
import uvloop

from greenlane.v1 import fleet_pb2, fleet_pb2_grpc


class Echo(fleet_pb2_grpc.FleetTelemetryServicer):
    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[fleet_pb2.CarStatus],
        context: grpc.aio.ServicerContext[fleet_pb2.CarStatus, fleet_pb2.BookingResponse],
    ) -> AsyncIterator[fleet_pb2.BookingResponse]:
        async for msg in request_iterator:
            yield fleet_pb2.BookingResponse(
                car_id=msg.car_id,
                status=fleet_pb2.ACCEPTED,
                message="stored",
                timestamp=msg.timestamp,
            )

    async def StreamTelemetryBatches(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[fleet_pb2.CarStatusBatch],
        context: grpc.aio.ServicerContext[fleet_pb2.CarStatusBatch, fleet_pb2.BatchResponse],
    ) -> AsyncIterator[fleet_pb2.BatchResponse]:
        async for batch in request_iterator:
            yield fleet_pb2.BatchResponse(
                status=fleet_pb2.ACCEPTED, accepted=len(batch.statuses), message="stored"
            )

    async def SendBatch(  # noqa: N802 - gRPC method name
        self,
        request: fleet_pb2.CarStatusBatch,
        context: grpc.aio.ServicerContext[fleet_pb2.CarStatusBatch, fleet_pb2.BatchResponse],
    ) -> fleet_pb2.BatchResponse:
        return fleet_pb2.BatchResponse(status=fleet_pb2.ACCEPTED, accepted=len(request.statuses))


async def serve(port: int) -> None:
    server = grpc.aio.server()
    fleet_pb2_grpc.add_FleetTelemetryServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
