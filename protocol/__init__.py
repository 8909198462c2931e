"""hexpsi's protocol core, sans-IO.

Everything here takes bytes, values, a random source and a clock as arguments and
returns bytes and values. Nothing here opens a socket, reads the clock, touches
the disk or imports gRPC/protobuf: ``server`` moves these values over the wire
and onto disk.
"""

PROTOCOL_VERSION = 1
