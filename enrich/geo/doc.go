// Package geo is the "geo" enrichment stage: it finds the district a point
// was measured in by point-in-polygon over a GeoJSON FeatureCollection of
// districts, and adds it as the district tag to points that have none (or to
// every point, with overwrite: true).
//
// The position comes from the point's lat/lon fields when it has both (a
// mobile sensor reports where it is), else from the station registry (an
// earlier registry stage). The answer is cached per station together with
// the position it was computed for, so a fixed station costs one lookup per
// point and the polygon test runs again only when the station moves.
//
// # Edge semantics
//
// Containment is github.com/paulmach/orb's planar test, with coordinates as
// GeoJSON has them (longitude, latitude) on a plane, which is exact enough
// at city scale:
//
//   - a point exactly on a district's outer edge or on one of its vertices is
//     inside that district;
//   - a point inside a hole is outside the polygon, and so is a point exactly
//     on the hole's edge (it belongs to whatever fills the hole);
//   - a point in any polygon of a MultiPolygon is inside;
//   - where districts touch, a point on the shared edge is inside both, and
//     the feature that comes first in the file wins.
//
// Edges are detected exactly for axis-parallel edges and vertices; on an
// oblique edge, floating-point rounding may put a point that is "on" the
// edge on either side, as with any planar test in binary floating point.
//
// The package imports enrich, enrich/internal/statemap, protocols,
// internal/confx and orb (orb and orb/planar only, not orb/geojson, which
// would link a BSON library into the collector).
package geo
