// Package privacy is the "privacy" enrichment stage: stations whose operator
// asked for it (public: false in the registry, typically a sensor on a
// resident's balcony) are shown to the public only at a coarse position.
//
// On the ingest path it rounds the lat/lon fields of such stations' points
// to a grid (default 0.01°, about 1.1 km north–south and 0.75 km east–west
// at 48° N) before anything is stored, so no public query can reveal the
// exact position. The API gets the same answer for registry entries from
// PublicLocation. Stations that are public, or unknown to the registry,
// are left as they are.
//
// The stage needs a registry stage before it in the chain: Init fails
// without one, because it could not tell which stations are private.
//
// The package imports enrich and protocols only (and internal/confx for
// problems).
package privacy
