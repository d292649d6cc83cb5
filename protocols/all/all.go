// Package all links every device protocol into a binary: each sub-package of
// protocols registers its input type in init, and a blank import here is what
// makes that init run. Only mains import this package, so that libraries and
// tests pull in exactly the protocols they use.
package all

import (
	_ "github.com/citysense/citysense/protocols/coap"   // CoAP server for POSTs of JSON and line protocol
	_ "github.com/citysense/citysense/protocols/httplp" // Influx line protocol and JSON over HTTP (type http)
	_ "github.com/citysense/citysense/protocols/modbus" // Modbus TCP and RTU polling by register maps and device profiles
	_ "github.com/citysense/citysense/protocols/mqtt"   // MQTT subscriptions (paho), manual acks after the buffer commit
	_ "github.com/citysense/citysense/protocols/sim"    // simulated smart-city stations
	_ "github.com/citysense/citysense/protocols/system" // the gateway's own CPU, memory, disk, load, uptime, temperature
)
