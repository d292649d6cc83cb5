// Package enrich turns raw readings into public data: ordered stages that add
// place (station, district), consistent units, derived air-quality indices and
// quality flags to a batch of points.
//
// A stage is an Enricher. Stages are pure once built: Enrich does no I/O and
// keeps no state that depends on the order batches arrive in beyond what the
// stage documents (AQI averaging windows, quality spike detection), so the
// collector can run them on any node. Stages register by type name and are
// built from collector.yaml; sub-packages (registry/, geo/, units/, aqi/,
// quality/, privacy/) each provide one.
//
// enrich imports only protocols; it must not import the collector, the agent,
// nats or bbolt.
package enrich
