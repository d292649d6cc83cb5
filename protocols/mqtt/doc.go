// Package mqtt is the "mqtt" input: it subscribes to topic filters on an MQTT
// broker (github.com/eclipse/paho.mqtt.golang) and turns each publication into
// points.
//
// # Basics
//
// Each subscription names a topic filter, an optional topic template that
// turns topic levels into tags, the measurement or the field name
// (sensors/{district}/{station}/{_measurement}), and a payload format: json
// (fields chosen by paths, nested objects flattened with "_", a timestamp path
// with a format), line protocol, a bare value, or a value template such as
// "{temperature};{humidity}".
//
// A message is acknowledged to the broker (PUBACK for QoS 1, PUBREC for QoS 2)
// only after the points it produced were accepted by the accumulator, which in
// the agent means fsync'd in the buffer. Messages are collected into batches
// while the previous batch is being committed (group commit), so the cost of
// one fsync is shared by many messages. The session is persistent (a stable
// client id and clean_session false), so messages that were not acknowledged
// when the agent stopped or died are delivered again by the broker.
//
// # Caveats
//
// A redelivered message yields the same points again. That is harmless only
// when its timestamp comes from the payload (json time_path, or line protocol
// with timestamps): points stamped with the receive time are stored twice.
//
// A payload that cannot be parsed is counted, logged (rate-limited) and
// acknowledged: the broker would otherwise deliver it again forever.
//
// The package imports protocols and internal/confx only; it must not import
// anything of the agent or the collector.
package mqtt
