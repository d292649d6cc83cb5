// Package statemap is the per-station state table of the stateful stages
// (aqi, quality, geo's cache): a concurrent map from station id to a
// pointer that is created on first use, with a bound on the number of
// entries so that a stream of made-up station ids cannot exhaust memory.
//
// It imports only the standard library.
package statemap
