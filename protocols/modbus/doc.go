// Package modbus is the "modbus" input: it polls Modbus TCP and RTU devices
// (github.com/simonvetter/modbus) by a register map and turns each poll into
// one point per device, and it provides Probe, the installer's tool for
// finding the right map.
//
// # Basics
//
// A register map lists fields: kind (holding, input, coil, discrete), address,
// type (int16 … float64, bool, string), word and byte order
// (ABCD/CDAB/BADC/DCBA), scale and offset. A map written once as a profile
// (one per meter model) is instantiated for any number of unit ids on any
// number of buses. Adjacent registers of one kind are coalesced into few
// requests (at most 125 registers or 2000 bits each, gaps up to max_gap
// read and discarded).
//
// Each device (address + unit id) polls on its own interval with a random
// jitter, so that one dead meter never delays the others. Devices that share
// an address (an RTU bus, or a TCP gateway in front of one) share one
// connection and their requests are serialised.
//
// # Caveats
//
// A request answered with an exception (illegal data address, device busy…)
// is retried register by register, so one bad register costs its own field
// only: it is counted and logged, and the other fields of the poll still
// make a point. A timeout or a broken connection skips the device's poll and
// puts the device in exponential backoff (up to backoff_max); other devices
// on other buses are not affected.
//
// The package imports protocols and internal/confx only; it must not import
// anything of the agent or the collector.
package modbus
