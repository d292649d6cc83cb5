// Package protocols is the shared language of CitySense: the Point and Batch data
// model, series keys, the Influx line-protocol codec (on
// github.com/influxdata/line-protocol/v2) and the Input interface with its registry.
//
// Every other package may import protocols; protocols imports nothing of CitySense.
// Device protocols live in sub-packages (sim/, and later mqtt/, modbus/, httplp/,
// coap/, system/); they register themselves in init and only mains blank-import
// protocols/all.
//
// # Basics
//
// A Point is one reading: a measurement ("air"), tags sorted by key
// ("station=s0001"), one or more typed fields ("pm25=12.3") and a timestamp in
// nanoseconds since the Unix epoch. A series is measurement + tag set + one field
// name; SeriesKey gives its canonical text form.
//
// # Caveats
//
// Float fields may not be NaN or ±Inf: line protocol cannot carry them, so the
// decoder and NewPoint reject them with ErrNotFinite rather than losing them
// quietly later in the pipeline.
package protocols
