#!/usr/bin/python3
"""A Modbus TCP server with a known register map, for the modbus input's tests.

Usage: modbus_server.py PORT

Units 1 and 2 serve the same map (a device profile instantiated twice); the
float32 at holding 2-3 is 20.5 + unit, in CDAB order. Holding registers
20-21 answer every read with exception 2 (illegal data address).

holding (zero-based, as on the wire)
  0      int16    -123
  1      uint16   500            (scale 0.1 -> 50.0)
  2-3    float32  20.5+unit      CDAB
  4-5    int32    -100000        ABCD
  6-7    uint32   70000          DCBA
  8-11   float64  1234.5678      ABCD
  16-17  string   "CS01"
  18     0x0008                  (bit 3 set)
  20-21  exception 2
input    0 uint16 230
coils    0 on, 1 off
discrete 0 on
"""
import logging
import struct
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartTcpServer

BAD = range(20, 22)


class Context(ModbusSlaveContext):
    """Refuses reads of holding registers 20-21 with an exception."""

    def validate(self, fc_as_hex, address, count=1):
        if fc_as_hex == 3 and any(a in BAD for a in range(address, address + count)):
            return False
        return super().validate(fc_as_hex, address, count)


def words(fmt, value):
    b = struct.pack(fmt, value)
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def unit(u):
    hr = [0] * 64
    hr[0] = words(">h", -123)[0]
    hr[1] = 500
    a, b = words(">f", 20.5 + u)
    hr[2:4] = [b, a]  # CDAB: low word first
    hr[4:6] = words(">i", -100000)
    hr[6:8] = words("<I", 70000)  # DCBA: little-endian bytes
    hr[8:12] = words(">d", 1234.5678)
    hr[16:18] = [0x4353, 0x3031]  # "CS01"
    hr[18] = 0x0008
    return Context(
        hr=ModbusSequentialDataBlock(0, hr),
        ir=ModbusSequentialDataBlock(0, [230] + [0] * 15),
        co=ModbusSequentialDataBlock(0, [True, False] + [False] * 14),
        di=ModbusSequentialDataBlock(0, [True] + [False] * 15),
        zero_mode=True,
    )


def main():
    logging.basicConfig(level=logging.WARNING)
    port = int(sys.argv[1])
    ctx = ModbusServerContext(slaves={1: unit(1), 2: unit(2)}, single=False)
    print("serving", flush=True)
    StartTcpServer(context=ctx, address=("127.0.0.1", port))


if __name__ == "__main__":
    main()
