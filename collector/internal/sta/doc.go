// Package sta serves the read-only subset of the OGC SensorThings API v1.1
// under /sta/v1.1/: Things (one per station), Locations, HistoricalLocations,
// Datastreams (one per station × measurement × field), Sensors,
// ObservedProperties, Observations and FeaturesOfInterest, with the query
// options $filter, $count, $orderby, $skip, $top, $select, $expand and
// $resultFormat=dataArray. docs/sensorthings.md is the user's guide.
//
// # Basics
//
// Entities other than Observations are a snapshot of the station registry,
// the store's index and the data contracts, rebuilt at most every
// Options.SnapshotTTL. Observations are read from the store's raw points on
// demand: $filter conditions on phenomenonTime/resultTime and on the
// Datastream are pushed down, so that only the series and time range asked
// for are read, and a page stops reading once it is full. Paging in the
// default order (Datastream, then time) or by time alone continues from a
// cursor ($skiptoken) rather than counting from the start again.
//
// The query string is parsed from RawQuery by hand: net/url drops every
// pair that holds a ';', which nested $expand options do. Options are
// applied in the order the standard gives: $filter, $count, $orderby,
// $skip, $top, then $expand and $select.
//
// # Caveats
//
//   - Every request is bounded: $top at most MaxTop, $expand at most
//     MaxExpandDepth deep, at most MaxEntities entities in one answer, at
//     most MaxScan raw points read; past a bound the answer is a 400 that
//     says what to narrow (or, when paging through Observations in the
//     default order, a shorter page with a nextLink that continues where
//     the reading stopped).
//   - Registered stations are placed only where the registry's privacy
//     rule (Registry.PublicLocation) allows; positions their points report
//     are used only for unregistered stations.
//   - Quality flag fields (qc, *_qc) are not Datastreams.
//   - Paths in $filter may not lead to Observations from another entity
//     set (no any/all lambdas); to-many navigations in paths match when any
//     related entity does.
//
// It imports the store (read side only), enrich and enrich/schema; it must
// not import the api, bus or ingest packages.
package sta
