package geo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/paulmach/orb"
)

// district is one feature of the districts file.
type district struct {
	name  string
	shape orb.MultiPolygon
	bound orb.Bound
}

type featureCollection struct {
	Type     string    `json:"type"`
	Features []feature `json:"features"`
}

type feature struct {
	Type       string          `json:"type"`
	ID         json.RawMessage `json:"id"`
	Properties map[string]any  `json:"properties"`
	Geometry   *geometry       `json:"geometry"`
}

type geometry struct {
	Type        string          `json:"type"`
	Coordinates json.RawMessage `json:"coordinates"`
}

// parseDistricts reads a GeoJSON FeatureCollection of Polygon and
// MultiPolygon features. property names the feature property holding the
// district's name; empty means "name", then "id", then the feature's id.
// GeoJSON parsing is a few lines of encoding/json; orb's geojson package
// would pull a BSON library into the binary for it.
func parseDistricts(data []byte, property string) ([]district, error) {
	var fc featureCollection
	if err := json.Unmarshal(data, &fc); err != nil {
		return nil, fmt.Errorf("not GeoJSON: %w", err)
	}
	if fc.Type != "FeatureCollection" {
		return nil, fmt.Errorf("want a FeatureCollection, got type %q", fc.Type)
	}
	if len(fc.Features) == 0 {
		return nil, errors.New("the FeatureCollection has no features")
	}
	var errs []error
	out := make([]district, 0, len(fc.Features))
	for i, f := range fc.Features {
		name, err := featureName(f, property)
		if err != nil {
			errs = append(errs, fmt.Errorf("feature %d: %w", i, err))
			continue
		}
		shape, err := f.shape()
		if err != nil {
			errs = append(errs, fmt.Errorf("feature %d (%s): %w", i, name, err))
			continue
		}
		out = append(out, district{name: name, shape: shape, bound: shape.Bound()})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func featureName(f feature, property string) (string, error) {
	keys := []string{property}
	if property == "" {
		keys = []string{"name", "id"}
	}
	for _, k := range keys {
		if v, ok := f.Properties[k]; ok {
			if s, ok := scalarString(v); ok && s != "" {
				return s, nil
			}
			return "", fmt.Errorf("property %q is %v, want a non-empty string or number", k, v)
		}
	}
	if property == "" && len(f.ID) > 0 {
		var v any
		if err := json.Unmarshal(f.ID, &v); err == nil {
			if s, ok := scalarString(v); ok && s != "" {
				return s, nil
			}
		}
	}
	if property == "" {
		return "", errors.New(`no "name" or "id" property and no feature id`)
	}
	return "", fmt.Errorf("no property %q", property)
}

func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

func (f feature) shape() (orb.MultiPolygon, error) {
	if f.Geometry == nil {
		return nil, errors.New("no geometry")
	}
	switch f.Geometry.Type {
	case "Polygon":
		var c [][][]float64
		if err := json.Unmarshal(f.Geometry.Coordinates, &c); err != nil {
			return nil, fmt.Errorf("polygon coordinates: %w", err)
		}
		p, err := polygon(c)
		if err != nil {
			return nil, err
		}
		return orb.MultiPolygon{p}, nil
	case "MultiPolygon":
		var c [][][][]float64
		if err := json.Unmarshal(f.Geometry.Coordinates, &c); err != nil {
			return nil, fmt.Errorf("multipolygon coordinates: %w", err)
		}
		if len(c) == 0 {
			return nil, errors.New("multipolygon without polygons")
		}
		mp := make(orb.MultiPolygon, 0, len(c))
		for j, pc := range c {
			p, err := polygon(pc)
			if err != nil {
				return nil, fmt.Errorf("polygon %d: %w", j, err)
			}
			mp = append(mp, p)
		}
		return mp, nil
	}
	return nil, fmt.Errorf("geometry type %q: want Polygon or MultiPolygon", f.Geometry.Type)
}

func polygon(c [][][]float64) (orb.Polygon, error) {
	if len(c) == 0 {
		return nil, errors.New("polygon without rings")
	}
	p := make(orb.Polygon, 0, len(c))
	for k, rc := range c {
		if len(rc) < 4 {
			return nil, fmt.Errorf("ring %d has %d positions, want at least 4", k, len(rc))
		}
		r := make(orb.Ring, 0, len(rc))
		for _, pos := range rc {
			if len(pos) < 2 || !finite(pos[0]) || !finite(pos[1]) || pos[0] < -180 || pos[0] > 180 || pos[1] < -90 || pos[1] > 90 {
				return nil, fmt.Errorf("ring %d: position %v is not [lon, lat] in range", k, pos)
			}
			r = append(r, orb.Point{pos[0], pos[1]})
		}
		if r[0] != r[len(r)-1] {
			return nil, fmt.Errorf("ring %d is not closed (first position %v, last %v)", k, r[0], r[len(r)-1])
		}
		p = append(p, r)
	}
	return p, nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
