package sta

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// geometry is a WKT or GeoJSON geometry in WGS 84 degrees, x = longitude.
// Distances are planar, in degrees, as in the filter example
// geo.distance(location, geography'POINT(16.37 48.2)') lt 0.01.
type geometry struct {
	kind  string         // Point, LineString, Polygon
	rings [][][2]float64 // Point: one ring of one position; LineString: one ring
}

// maxWKTPoints bounds a geometry literal.
const maxWKTPoints = 1000

func pointGeo(lon, lat float64) geometry {
	return geometry{kind: "Point", rings: [][][2]float64{{{lon, lat}}}}
}

// parseWKT reads POINT, LINESTRING and POLYGON (with holes), optionally
// prefixed by SRID=4326;.
func parseWKT(s string) (geometry, error) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ';'); i >= 0 && strings.HasPrefix(strings.ToUpper(s), "SRID=") {
		if srid := strings.TrimSpace(s[5:i]); srid != "4326" {
			return geometry{}, fmt.Errorf("geometry: SRID %s not supported, only 4326", srid)
		}
		s = strings.TrimSpace(s[i+1:])
	}
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return geometry{}, fmt.Errorf("geometry %q: want POINT(x y), LINESTRING(…) or POLYGON((…))", s)
	}
	kind := strings.ToUpper(strings.TrimSpace(s[:open]))
	body := s[open+1 : len(s)-1]
	total := 0
	readRing := func(r string) ([][2]float64, error) {
		var out [][2]float64
		for _, pt := range strings.Split(r, ",") {
			f := strings.Fields(pt)
			if len(f) != 2 {
				return nil, fmt.Errorf("geometry: bad position %q", strings.TrimSpace(pt))
			}
			x, err1 := strconv.ParseFloat(f[0], 64)
			y, err2 := strconv.ParseFloat(f[1], 64)
			if err1 != nil || err2 != nil || math.IsNaN(x) || math.IsNaN(y) || math.Abs(x) > 180 || math.Abs(y) > 90 {
				return nil, fmt.Errorf("geometry: bad position %q", strings.TrimSpace(pt))
			}
			if total++; total > maxWKTPoints {
				return nil, fmt.Errorf("geometry: more than %d positions", maxWKTPoints)
			}
			out = append(out, [2]float64{x, y})
		}
		return out, nil
	}
	switch kind {
	case "POINT":
		r, err := readRing(body)
		if err != nil {
			return geometry{}, err
		}
		if len(r) != 1 {
			return geometry{}, errors.New("geometry: a POINT has one position")
		}
		return geometry{kind: "Point", rings: [][][2]float64{r}}, nil
	case "LINESTRING":
		r, err := readRing(body)
		if err != nil {
			return geometry{}, err
		}
		if len(r) < 2 {
			return geometry{}, errors.New("geometry: a LINESTRING has two positions or more")
		}
		return geometry{kind: "LineString", rings: [][][2]float64{r}}, nil
	case "POLYGON":
		g := geometry{kind: "Polygon"}
		rest := strings.TrimSpace(body)
		for rest != "" {
			if rest[0] != '(' {
				return geometry{}, errors.New("geometry: POLYGON rings are written ((x y, …), (…))")
			}
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return geometry{}, errors.New("geometry: unclosed POLYGON ring")
			}
			r, err := readRing(rest[1:end])
			if err != nil {
				return geometry{}, err
			}
			if len(r) < 4 || r[0] != r[len(r)-1] {
				return geometry{}, errors.New("geometry: a POLYGON ring has four positions or more and ends where it starts")
			}
			g.rings = append(g.rings, r)
			rest = strings.TrimSpace(rest[end+1:])
			rest = strings.TrimSpace(strings.TrimPrefix(rest, ","))
		}
		if len(g.rings) == 0 {
			return geometry{}, errors.New("geometry: empty POLYGON")
		}
		return g, nil
	}
	return geometry{}, fmt.Errorf("geometry type %q not supported; use POINT, LINESTRING or POLYGON", kind)
}

// geoJSON is the geometry as a GeoJSON object.
func (g geometry) geoJSON() obj {
	var coords any
	switch g.kind {
	case "Point":
		coords = g.rings[0][0][:]
	case "LineString":
		coords = g.rings[0]
	default:
		coords = g.rings
	}
	return obj{{"type", g.kind}, {"coordinates", coords}}
}

func geoEqual(a, b geometry) bool {
	if a.kind != b.kind || len(a.rings) != len(b.rings) {
		return false
	}
	for i := range a.rings {
		if len(a.rings[i]) != len(b.rings[i]) {
			return false
		}
		for j := range a.rings[i] {
			if a.rings[i][j] != b.rings[i][j] {
				return false
			}
		}
	}
	return true
}

// inRing reports whether p is inside the closed ring r (even-odd rule).
func inRing(p [2]float64, r [][2]float64) bool {
	in := false
	for i, j := 0, len(r)-1; i < len(r); j, i = i, i+1 {
		a, b := r[i], r[j]
		if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0]-a[0])*(p[1]-a[1])/(b[1]-a[1])+a[0] {
			in = !in
		}
	}
	return in
}

func inPolygon(p [2]float64, g geometry) bool {
	if !inRing(p, g.rings[0]) {
		return false
	}
	for _, hole := range g.rings[1:] {
		if inRing(p, hole) {
			return false
		}
	}
	return true
}

// segDist is the planar distance of p from the segment a–b.
func segDist(p, a, b [2]float64) float64 {
	dx, dy := b[0]-a[0], b[1]-a[1]
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = math.Max(0, math.Min(1, ((p[0]-a[0])*dx+(p[1]-a[1])*dy)/l))
	}
	return math.Hypot(p[0]-a[0]-t*dx, p[1]-a[1]-t*dy)
}

// pointDist is the distance from p to g: zero inside a polygon.
func pointDist(p [2]float64, g geometry) float64 {
	if g.kind == "Point" {
		q := g.rings[0][0]
		return math.Hypot(p[0]-q[0], p[1]-q[1])
	}
	if g.kind == "Polygon" && inPolygon(p, g) {
		return 0
	}
	d := math.Inf(1)
	for _, r := range g.rings {
		for i := 1; i < len(r); i++ {
			d = math.Min(d, segDist(p, r[i-1], r[i]))
		}
	}
	return d
}

// geoDistance answers for a point and any geometry; ok is false otherwise.
func geoDistance(a, b geometry) (float64, bool) {
	switch {
	case a.kind == "Point":
		return pointDist(a.rings[0][0], b), true
	case b.kind == "Point":
		return pointDist(b.rings[0][0], a), true
	}
	return 0, false
}

func geoWithin(a, b geometry) bool {
	if b.kind != "Polygon" {
		return a.kind == "Point" && b.kind == "Point" && geoEqual(a, b)
	}
	for _, r := range a.rings {
		for _, p := range r {
			if !inPolygon(p, b) {
				return false
			}
		}
	}
	return true
}

func geoIntersects(a, b geometry) bool {
	if d, ok := geoDistance(a, b); ok {
		return d == 0
	}
	// Two lines or polygons: a vertex of one inside the other covers the
	// common cases; exact segment intersection is beyond this subset.
	for _, pair := range [][2]geometry{{a, b}, {b, a}} {
		if pair[1].kind != "Polygon" {
			continue
		}
		for _, r := range pair[0].rings {
			for _, p := range r {
				if inPolygon(p, pair[1]) {
					return true
				}
			}
		}
	}
	return false
}

func geoLength(g geometry) any {
	if g.kind != "LineString" {
		return nil
	}
	l := 0.0
	r := g.rings[0]
	for i := 1; i < len(r); i++ {
		l += math.Hypot(r[i][0]-r[i-1][0], r[i][1]-r[i-1][1])
	}
	return l
}
