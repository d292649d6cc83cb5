package sta

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/protocols"
)

const base = "http://example.com/sta/v1.1"

// q turns a readable URL into a request target: spaces and quotes
// escaped, as a client sends them.
func q(s string) string { return strings.NewReplacer(" ", "%20", "'", "%27").Replace(s) }

// TestHandler_exactJSON checks whole answers byte for byte.
func TestHandler_exactJSON(t *testing.T) {
	h := newHandler(fixture(t), nil)
	cases := []struct{ name, url, want string }{
		{"landing page", "/sta/v1.1/",
			`{"value":[{"name":"Things","url":"` + base + `/Things"},{"name":"Locations","url":"` + base + `/Locations"},` +
				`{"name":"HistoricalLocations","url":"` + base + `/HistoricalLocations"},{"name":"Datastreams","url":"` + base + `/Datastreams"},` +
				`{"name":"Sensors","url":"` + base + `/Sensors"},{"name":"ObservedProperties","url":"` + base + `/ObservedProperties"},` +
				`{"name":"Observations","url":"` + base + `/Observations"},{"name":"FeaturesOfInterest","url":"` + base + `/FeaturesOfInterest"}],` +
				`"serverSettings":{"conformance":["http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",` +
				`"http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",` +
				`"http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",` +
				`"http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array"]}}`},
		{"one Thing", "/sta/v1.1/Things('s0001')",
			`{"@iot.id":"s0001","@iot.selfLink":"` + base + `/Things('s0001')","name":"Karlsplatz","description":"Street station s0001",` +
				`"properties":{"station":"s0001","district":"d02","model":"CS-AQ2","owner":"Demo city","licence":"CC-BY-4.0","altitude":197,"registered":true,"last_seen":"2026-01-01T00:02:00Z"},` +
				`"Locations@iot.navigationLink":"` + base + `/Things('s0001')/Locations",` +
				`"HistoricalLocations@iot.navigationLink":"` + base + `/Things('s0001')/HistoricalLocations",` +
				`"Datastreams@iot.navigationLink":"` + base + `/Things('s0001')/Datastreams"}`},
		{"private Location on the privacy grid", "/sta/v1.1/Locations('s0002')?$select=location,properties",
			`{"location":{"type":"Point","coordinates":[16.3,48.21]},"properties":{"coarsened":true}}`},
		{"count Datastream", "/sta/v1.1/Datastreams('s0002:traffic:count')?$select=name,unitOfMeasurement,observationType,Thing",
			`{"name":"Home sensor count","unitOfMeasurement":{"name":"vehicles","symbol":"vehicles","definition":"urn:citysense:unit:vehicles"},` +
				`"observationType":"http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation",` +
				`"Thing@iot.navigationLink":"` + base + `/Datastreams('s0002:traffic:count')/Thing"}`},
		{"unit from the units stage", "/sta/v1.1/Datastreams('s0001:noise:laeq')?$select=unitOfMeasurement",
			`{"unitOfMeasurement":{"name":"dB(A)","symbol":"dB(A)","definition":"urn:citysense:unit:dB(A)"}}`},
		{"ObservedProperty with contract", "/sta/v1.1/ObservedProperties('air:pm25')?$select=name,definition,description,properties",
			`{"name":"pm25","definition":"urn:citysense:schema:air:pm25","description":"PM2.5 mass concentration","properties":{"measurement":"air","unit":"µg/m³","type":"float"}}`},
		{"one Observation", "/sta/v1.1/Observations('s0001:air:pm25:1767225660000000000')",
			`{"@iot.id":"s0001:air:pm25:1767225660000000000","@iot.selfLink":"` + base + `/Observations('s0001:air:pm25:1767225660000000000')",` +
				`"phenomenonTime":"2026-01-01T00:01:00Z","resultTime":"2026-01-01T00:01:00Z","result":11,` +
				`"Datastream@iot.navigationLink":"` + base + `/Observations('s0001:air:pm25:1767225660000000000')/Datastream",` +
				`"FeatureOfInterest@iot.navigationLink":"` + base + `/Observations('s0001:air:pm25:1767225660000000000')/FeatureOfInterest"}`},
		{"$top and nextLink", "/sta/v1.1/Things?$top=2&$select=@iot.id",
			`{"value":[{"@iot.id":"s0001"},{"@iot.id":"s0002"}],"@iot.nextLink":"` + base + `/Things?$skip=2&$top=2&$select=@iot.id"}`},
		{"$skip", "/sta/v1.1/Things?$skip=1&$select=@iot.id",
			`{"value":[{"@iot.id":"s0002"},{"@iot.id":"s0003"}]}`},
		{"$count ignores $top", "/sta/v1.1/Things?$count=true&$top=1&$select=name",
			`{"@iot.count":3,"value":[{"name":"Karlsplatz"}],"@iot.nextLink":"` + base + `/Things?$count=true&$skip=1&$top=1&$select=name"}`},
		{"$orderby desc", q("/sta/v1.1/Things?$orderby=name desc&$select=name"),
			`{"value":[{"name":"Praterstern"},{"name":"Karlsplatz"},{"name":"Home sensor"}]}`},
		{"$orderby two keys", q("/sta/v1.1/Datastreams?$orderby=properties/measurement desc,name&$select=@iot.id"),
			`{"value":[{"@iot.id":"s0002:traffic:count"},{"@iot.id":"s0001:noise:laeq"},{"@iot.id":"s0002:air:pm25"},{"@iot.id":"s0001:air:pm10"},{"@iot.id":"s0001:air:pm25"}]}`},
		{"$expand with ';' options", q("/sta/v1.1/Things?$expand=Datastreams($select=name;$top=1)&$select=name&$top=1"),
			`{"value":[{"name":"Karlsplatz","Datastreams":[{"name":"Karlsplatz pm10"}],` +
				`"Datastreams@iot.nextLink":"` + base + `/Things('s0001')/Datastreams?$skip=1&$top=1&$select=name"}],` +
				`"@iot.nextLink":"` + base + `/Things?$skip=1&$top=1&$select=name&$expand=Datastreams($select=name;$top=1)"}`},
		{"$expand of one entity and a path", q("/sta/v1.1/Datastreams('s0001:noise:laeq')?$select=name&$expand=Thing($select=name),ObservedProperty($select=name),Sensor/Datastreams($select=@iot.id;$filter=properties/measurement eq 'air')"),
			`{"name":"Karlsplatz laeq","Thing":{"name":"Karlsplatz"},"ObservedProperty":{"name":"laeq"},` +
				`"Sensor":{"@iot.id":"s0001","@iot.selfLink":"` + base + `/Sensors('s0001')","name":"CS-AQ2","description":"The sensors of station s0001",` +
				`"encodingType":"text/plain","metadata":"CS-AQ2","properties":{"station":"s0001"},` +
				`"Datastreams@iot.navigationLink":"` + base + `/Sensors('s0001')/Datastreams",` +
				`"Datastreams":[{"@iot.id":"s0001:air:pm10"},{"@iot.id":"s0001:air:pm25"}]}}`},
		{"expanded Observations with every option", q("/sta/v1.1/Datastreams('s0001:air:pm25')?$select=name&$expand=Observations($filter=result ge 11;$orderby=phenomenonTime desc;$top=1;$count=true;$select=result)"),
			`{"name":"Karlsplatz pm25","Observations@iot.count":2,"Observations":[{"result":12}],` +
				`"Observations@iot.nextLink":"` + base + `/Datastreams('s0001:air:pm25')/Observations?$filter=result%20ge%2011&$count=true&$orderby=phenomenonTime%20desc&$top=1&$select=result&$skiptoken=MTc2NzIyNTcyMDAwMDAwMDAwMCxzMDAwMTphaXI6cG0yNQ"}`},
		{"$expand merges items of one navigation", q("/sta/v1.1/Things('s0002')?$select=name&$expand=Datastreams/Thing($select=name),Datastreams($select=name;$orderby=name desc),Datastreams/ObservedProperty($select=name)"),
			`{"name":"Home sensor","Datastreams":[{"name":"Home sensor pm25","Thing":{"name":"Home sensor"},"ObservedProperty":{"name":"pm25"}},` +
				`{"name":"Home sensor count","Thing":{"name":"Home sensor"},"ObservedProperty":{"name":"count"}}]}`},
		{"dataArray", "/sta/v1.1/Datastreams('s0001:air:pm25')/Observations?$resultFormat=dataArray&$count=true",
			`{"@iot.count":3,"value":[{"Datastream@iot.navigationLink":"` + base + `/Datastreams('s0001:air:pm25')","components":["id","phenomenonTime","result"],"dataArray@iot.count":3,"dataArray":[` +
				`["s0001:air:pm25:1767225600000000000","2026-01-01T00:00:00Z",10],["s0001:air:pm25:1767225660000000000","2026-01-01T00:01:00Z",11],["s0001:air:pm25:1767225720000000000","2026-01-01T00:02:00Z",12]]}]}`},
		{"dataArray with $select over two Datastreams", q("/sta/v1.1/Observations?$resultFormat=dataArray&$select=result,phenomenonTime&$filter=Datastream/ObservedProperty/name eq 'pm25' and phenomenonTime le 2026-01-01T00:01:00Z"),
			`{"value":[{"Datastream@iot.navigationLink":"` + base + `/Datastreams('s0001:air:pm25')","components":["result","phenomenonTime"],"dataArray@iot.count":2,"dataArray":[[10,"2026-01-01T00:00:00Z"],[11,"2026-01-01T00:01:00Z"]]},` +
				`{"Datastream@iot.navigationLink":"` + base + `/Datastreams('s0002:air:pm25')","components":["result","phenomenonTime"],"dataArray@iot.count":2,"dataArray":[[5.5,"2026-01-01T00:00:00Z"],[5.5,"2026-01-01T00:01:00Z"]]}]}`},
		{"property", "/sta/v1.1/Things('s0001')/name", `{"name":"Karlsplatz"}`},
		{"integer result stays an integer", "/sta/v1.1/Datastreams('s0002:traffic:count')/Observations?$select=result", `{"value":[{"result":7}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := get(t, h, c.url)
			if code != http.StatusOK || strings.TrimSpace(body) != c.want {
				t.Fatalf("GET %s = %d\n%s\nwant\n%s", c.url, code, body, c.want)
			}
		})
	}
}

// TestHandler_queryOptions checks which entities each query answers.
func TestHandler_queryOptions(t *testing.T) {
	h := newHandler(fixture(t), nil)
	all := []string{"s0001:air:pm10:1767225600000000000", "s0001:air:pm10:1767225660000000000", "s0001:air:pm10:1767225720000000000",
		"s0001:air:pm25:1767225600000000000", "s0001:air:pm25:1767225660000000000", "s0001:air:pm25:1767225720000000000",
		"s0001:noise:laeq:1767225600000000000", "s0002:air:pm25:1767225600000000000", "s0002:air:pm25:1767225660000000000",
		"s0002:traffic:count:1767225600000000000"}
	cases := []struct {
		name, url string
		want      []string
		count     float64 // -1: no @iot.count expected
	}{
		{"Things", "/sta/v1.1/Things", []string{"s0001", "s0002", "s0003"}, -1},
		{"Locations", "/sta/v1.1/Locations", []string{"s0001", "s0002", "s0003"}, -1},
		{"HistoricalLocations only of stations that reported", "/sta/v1.1/HistoricalLocations", []string{"s0001", "s0002"}, -1},
		{"Datastreams without quality flags", "/sta/v1.1/Datastreams?$count=true", []string{"s0001:air:pm10", "s0001:air:pm25", "s0001:noise:laeq", "s0002:air:pm25", "s0002:traffic:count"}, 5},
		{"Sensors", "/sta/v1.1/Sensors", []string{"s0001", "s0002", "s0003"}, -1},
		{"ObservedProperties", "/sta/v1.1/ObservedProperties", []string{"air:pm10", "air:pm25", "noise:laeq", "traffic:count"}, -1},
		{"FeaturesOfInterest", "/sta/v1.1/FeaturesOfInterest", []string{"s0001", "s0002", "s0003"}, -1},
		{"Observations in the default order", "/sta/v1.1/Observations?$count=true", all, 10},
		{"Thing's Datastreams", "/sta/v1.1/Things('s0002')/Datastreams", []string{"s0002:air:pm25", "s0002:traffic:count"}, -1},
		{"navigation chain", "/sta/v1.1/Observations('s0002:traffic:count:1767225600000000000')/Datastream/Thing/Locations", []string{"s0002"}, -1},
		{"FeatureOfInterest's Observations", "/sta/v1.1/FeaturesOfInterest('s0002')/Observations", all[7:], -1},
		{"ObservedProperty's Datastreams", "/sta/v1.1/ObservedProperties('air:pm25')/Datastreams", []string{"s0001:air:pm25", "s0002:air:pm25"}, -1},
		{"$filter eq on a JSON property", q("/sta/v1.1/Things?$filter=properties/district eq 'd03'"), []string{"s0003"}, -1},
		{"$filter ne and not", q("/sta/v1.1/Things?$filter=not (properties/district ne 'd03')"), []string{"s0003"}, -1},
		{"$filter or, and binds tighter", q("/sta/v1.1/Things?$filter=name eq 'Praterstern' or name eq 'Karlsplatz' and properties/district eq 'd03'"), []string{"s0003"}, -1},
		{"$filter parentheses", q("/sta/v1.1/Things?$filter=(name eq 'Praterstern' or name eq 'Karlsplatz') and properties/district eq 'd02'"), []string{"s0001"}, -1},
		{"$filter through a to-many navigation", q("/sta/v1.1/Things?$filter=Datastreams/ObservedProperty/name eq 'laeq'"), []string{"s0001"}, -1},
		{"$filter startswith", q("/sta/v1.1/Things?$filter=startswith(name,'Kar')"), []string{"s0001"}, -1},
		{"$filter endswith", q("/sta/v1.1/Things?$filter=endswith(name,'stern')"), []string{"s0003"}, -1},
		{"$filter substringof", q("/sta/v1.1/Things?$filter=substringof('sensor',name)"), []string{"s0002"}, -1},
		{"$filter contains and tolower", q("/sta/v1.1/Things?$filter=contains(tolower(name),'karl')"), []string{"s0001"}, -1},
		{"$filter length and arithmetic", q("/sta/v1.1/Things?$filter=length(name) add 1 eq 11"), []string{"s0001"}, -1},
		{"$filter path Datastream/ObservedProperty/name", q("/sta/v1.1/Observations?$filter=Datastream/ObservedProperty/name eq 'pm25' and result gt 10.5"), all[4:6], -1},
		{"$filter time literal", q("/sta/v1.1/Observations?$filter=phenomenonTime gt 2026-01-01T00:00:30Z&$count=true"), []string{all[1], all[2], all[4], all[5], all[8]}, 5},
		{"$filter time range and Datastream id", q("/sta/v1.1/Observations?$filter=Datastream/@iot.id eq 's0001:air:pm25' and phenomenonTime ge 2026-01-01T00:01:00Z and resultTime lt 2026-01-01T00:02:00Z"), all[4:5], -1},
		{"$filter time with a zone offset", q("/sta/v1.1/Observations?$filter=phenomenonTime eq 2026-01-01T01:01:00%2B01:00"), []string{all[1], all[4], all[8]}, -1},
		{"$filter time as a string", q("/sta/v1.1/Observations?$filter=phenomenonTime eq '2026-01-01T00:02:00Z'"), []string{all[2], all[5]}, -1},
		{"$filter arithmetic on results", q("/sta/v1.1/Observations?$filter=result mul 2 eq 11"), all[7:9], -1},
		{"$filter on the FeatureOfInterest", q("/sta/v1.1/Observations?$filter=FeatureOfInterest/name eq 'Home sensor'"), all[7:], -1},
		{"$filter hour()", q("/sta/v1.1/Observations?$filter=minute(phenomenonTime) eq 2"), []string{all[2], all[5]}, -1},
		{"geo.distance", q("/sta/v1.1/Locations?$filter=geo.distance(location, geography'POINT(16.29957 48.20511)') lt 0.01"), []string{"s0001", "s0002"}, -1},
		{"geo.distance uses the public position", q("/sta/v1.1/Locations?$filter=geo.distance(location, geography'POINT(16.29924 48.21221)') lt 0.001"), nil, -1},
		{"st_within", q("/sta/v1.1/Locations?$filter=st_within(location, geography'POLYGON((16.35 48.2, 16.45 48.2, 16.45 48.3, 16.35 48.3, 16.35 48.2))')"), []string{"s0003"}, -1},
		{"st_within through a navigation", q("/sta/v1.1/Things?$filter=st_within(Locations/location, geography'POLYGON((16.35 48.2, 16.45 48.2, 16.45 48.3, 16.35 48.3, 16.35 48.2))')"), []string{"s0003"}, -1},
		{"FeaturesOfInterest by geo.intersects", q("/sta/v1.1/FeaturesOfInterest?$filter=geo.intersects(feature, geography'POLYGON((16.2 48.1, 16.35 48.1, 16.35 48.22, 16.2 48.22, 16.2 48.1))')"), []string{"s0001", "s0002"}, -1},
		{"Observations ordered by result", q("/sta/v1.1/Observations?$orderby=result desc,phenomenonTime desc&$top=3"), []string{"s0001:noise:laeq:1767225600000000000", "s0001:air:pm10:1767225720000000000", "s0001:air:pm10:1767225660000000000"}, -1},
		{"Observations newest first", q("/sta/v1.1/Observations?$orderby=phenomenonTime desc&$top=4"), []string{all[2], all[5], all[1], all[4]}, -1},
		{"Observations oldest first, skip", q("/sta/v1.1/Observations?$orderby=phenomenonTime&$skip=4&$top=3"), []string{all[9], all[1], all[4]}, -1},
		{"Observations $skip in the default order", "/sta/v1.1/Observations?$skip=8", all[8:], -1},
		{"$top=0 counts only", "/sta/v1.1/Observations?$top=0&$count=true", nil, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, v, body := get(t, h, c.url)
			if code != http.StatusOK {
				t.Fatalf("GET %s = %d %s", c.url, code, body)
			}
			if got := ids(v, "value"); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("GET %s ids = %q, want %q\n%s", c.url, got, c.want, body)
			}
			n, ok := v["@iot.count"].(float64)
			if c.count >= 0 && (!ok || n != c.count) || c.count < 0 && ok {
				t.Fatalf("GET %s @iot.count = %v (present %v), want %v", c.url, n, ok, c.count)
			}
		})
	}
}

// TestHandler_badRequests: hostile and mistaken input gets a 4xx with a
// JSON error, never a 500 or an empty 200.
func TestHandler_badRequests(t *testing.T) {
	h := newHandler(fixture(t), nil)
	deep := strings.Repeat("(", 200) + "name eq 'x'" + strings.Repeat(")", 200)
	cases := []struct {
		url  string
		code int
		msg  string // part of the error
	}{
		{"/sta/v1.1/Things?$top=10001", 400, "$top: 10001 is more than the maximum of 10000"},
		{"/sta/v1.1/Things?$top=99999999999999999999", 400, "$top"},
		{"/sta/v1.1/Things?$top=-1", 400, "$top"},
		{"/sta/v1.1/Things?$top=ten", 400, "$top"},
		{"/sta/v1.1/Things?$skip=-5", 400, "$skip"},
		{"/sta/v1.1/Things?$count=yes", 400, "$count"},
		{"/sta/v1.1/Things?$top=1&$top=2", 400, "given twice"},
		{"/sta/v1.1/Things?$format=xml", 400, "unknown query option $format"},
		{"/sta/v1.1/Things?$filter=", 400, "empty expression"},
		{q("/sta/v1.1/Things?$filter=name eq"), 400, "$filter"},
		{q("/sta/v1.1/Things?$filter=name eq 'x"), 400, "unterminated string"},
		{q("/sta/v1.1/Things?$filter=nosuch eq 1"), 400, `Things has no property "nosuch"`},
		{q("/sta/v1.1/Things?$filter=name eq 'x' or 1=1 --"), 400, "$filter"},
		{q("/sta/v1.1/Things?$filter=name eq 'x'; DROP TABLE things"), 400, "$filter"},
		{q("/sta/v1.1/Things?$filter=<script>alert(1)</script>"), 400, "$filter"},
		{q("/sta/v1.1/Things?$filter=frobnicate(name)"), 400, `unknown function "frobnicate"`},
		{q("/sta/v1.1/Things?$filter=startswith(name)"), 400, "takes 2 arguments"},
		{q("/sta/v1.1/Things?$filter=" + deep), 400, "nested deeper"},
		{q("/sta/v1.1/Things?$filter=" + strings.Repeat("not ", 100) + "true"), 400, "nested deeper"},
		{q("/sta/v1.1/Things?$filter=name eq '" + strings.Repeat("a", 5000) + "'"), 400, "longer than"},
		{q("/sta/v1.1/Observations?$filter=phenomenonTime gt 2026-13-45T00:00:00Z"), 400, "bad time"},
		{q("/sta/v1.1/Observations?$filter=phenomenonTime gt '2026-02-30'"), 400, "bad time"},
		{q("/sta/v1.1/Observations?$filter=phenomenonTime gt 9999-01-01T00:00:00Z"), 400, "out of range"},
		{q("/sta/v1.1/Things?$filter=Datastreams/Observations/result gt 1"), 400, "paths to Observations"},
		{q("/sta/v1.1/Locations?$filter=st_within(location, geography'POLYGON((1 2, 3 4))')"), 400, "POLYGON ring"},
		{q("/sta/v1.1/Locations?$filter=geo.distance(location, geography'POINT(200 0)') lt 1"), 400, "bad position"},
		{"/sta/v1.1/Things?$expand=Datastreams/Thing/Datastreams/Thing", 400, "nested deeper than 3"},
		{"/sta/v1.1/Things?$expand=Datastreams($expand=Thing($expand=Datastreams($expand=Thing)))", 400, "nested deeper than 3"},
		{"/sta/v1.1/Things?$expand=Nope", 400, `no navigation "Nope"`},
		{"/sta/v1.1/Things?$expand=Datastreams($top=1", 400, "unbalanced"},
		{"/sta/v1.1/Things?$expand=Datastreams($frob=1)", 400, "not allowed"},
		{"/sta/v1.1/Datastreams?$expand=Thing($top=1)", 400, "one entity"},
		{"/sta/v1.1/Things?$expand=Datastreams($top=1),Datastreams($top=2)", 400, "expanded twice with options"},
		{"/sta/v1.1/Things?$select=nosuch", 400, "no property"},
		{"/sta/v1.1/Things?$orderby=nosuch", 400, "no property"},
		{"/sta/v1.1/Things?$resultFormat=dataArray", 400, "for Observations"},
		{"/sta/v1.1/Observations?$resultFormat=csv", 400, "only dataArray"},
		{"/sta/v1.1/Observations?$skiptoken=!!!", 400, "$skiptoken"},
		{"/sta/v1.1/Things('s0001')?$top=1", 400, "applies to collections"},
		{"/sta/v1.1/Things('s0001')/name?$select=name", 400, "do not apply"},
		{"/sta/v1.1/Things(s0001)", 400, "quote string ids"},
		{"/sta/v1.1/Things/Datastreams", 400, "is a collection"},
		{"/sta/v1.1/Things('s0001')/$ref", 400, "$ref"},
		{"/sta/v1.1/Nope", 404, "no entity set"},
		{"/sta/v1.1/Things('nope')", 404, "no Thing"},
		{"/sta/v1.1/Things(1)", 404, `no Thing with id "1"`},
		{"/sta/v1.1/Things('s0001')/Nope", 404, "no property or navigation"},
		{"/sta/v1.1/Things('s0002')/Datastreams('s0001:air:pm25')", 404, "does not exist"},
		{"/sta/v1.1/Observations('s0001:air:pm25:5')", 404, "no Observation"},
		{"/sta/v1.1/Observations('garbage')", 404, "no Observation"},
		{"/sta/v1.1/Things?$filter=%zz", 400, "bad escape"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			code, v, body := get(t, h, c.url)
			msg, _ := v["error"].(string)
			if code != c.code || !strings.Contains(msg, c.msg) {
				t.Fatalf("GET %s = %d %s, want %d with %q", c.url, code, body, c.code, c.msg)
			}
		})
	}
	r := httptest.NewRequest(http.MethodPost, "/sta/v1.1/Things", strings.NewReader("{}"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST = %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// TestHandler_links: links follow X-Forwarded-* or the configured public
// URL, and ignore forwarded values that are not a host or a path.
func TestHandler_links(t *testing.T) {
	st := fixture(t)
	cases := []struct {
		name      string
		publicURL string
		headers   []string
		want      string
	}{
		{"request", "", nil, "http://example.com/sta/v1.1/Things('s0001')"},
		{"forwarded", "", []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "data.example.city", "X-Forwarded-Prefix", "/city/"},
			"https://data.example.city/city/sta/v1.1/Things('s0001')"},
		{"first of a forwarded list", "", []string{"X-Forwarded-Proto", "https, http", "X-Forwarded-Host", "a.example, b.example"},
			"https://a.example/sta/v1.1/Things('s0001')"},
		{"hostile forwarded values ignored", "", []string{"X-Forwarded-Proto", "javascript", "X-Forwarded-Host", "evil\"><script>", "X-Forwarded-Prefix", "/a b"},
			"http://example.com/sta/v1.1/Things('s0001')"},
		{"public URL wins", "https://data.example.city/", []string{"X-Forwarded-Host", "other.example"},
			"https://data.example.city/sta/v1.1/Things('s0001')"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHandler(st, func(o *Options) { o.PublicURL = c.publicURL })
			code, v, body := get(t, h, "/sta/v1.1/Things?$top=1", c.headers...)
			list, _ := v["value"].([]any)
			if code != 200 || len(list) != 1 {
				t.Fatalf("%d %s", code, body)
			}
			self := list[0].(map[string]any)["@iot.selfLink"]
			next, _ := v["@iot.nextLink"].(string)
			if self != c.want || !strings.HasPrefix(next, strings.TrimSuffix(c.want, "('s0001')")+"?") {
				t.Fatalf("selfLink %v nextLink %v, want %s", self, next, c.want)
			}
		})
	}
}

// TestHandler_entityBound: an answer that would hold too many entities
// is refused, however they come (here: expanded).
func TestHandler_entityBound(t *testing.T) {
	h := newHandler(fixture(t), func(o *Options) { o.MaxEntities = 6 })
	if code, v, body := get(t, h, "/sta/v1.1/Things?$expand=Datastreams"); code != 400 || !strings.Contains(v["error"].(string), "more than 6 entities") {
		t.Fatalf("%d %s", code, body)
	}
	if code, _, body := get(t, h, "/sta/v1.1/Things?$expand=Locations"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
}

// TestHandler_scanBound: a query that would read more raw points than
// MaxScan is a 400 (ordering, counting) or a short page with a nextLink
// that continues where reading stopped (default order).
func TestHandler_scanBound(t *testing.T) {
	h := newHandler(fixture(t), func(o *Options) { o.MaxScan = 4 })
	for _, u := range []string{"/sta/v1.1/Observations?$count=true", q("/sta/v1.1/Observations?$orderby=result")} {
		if code, v, body := get(t, h, u); code != 400 || !strings.Contains(v["error"].(string), "would read more than 4 observations") {
			t.Fatalf("GET %s = %d %s", u, code, body)
		}
	}
	// Paging under the bound still reaches every Observation once.
	var got []string
	next := "/sta/v1.1/Observations?$select=@iot.id"
	for pages := 0; next != ""; pages++ {
		if pages > 20 {
			t.Fatal("more than 20 pages for 10 Observations")
		}
		code, v, body := get(t, h, strings.TrimPrefix(next, "http://example.com"))
		if code != 200 {
			t.Fatalf("GET %s = %d %s", next, code, body)
		}
		got = append(got, ids(v, "value")...)
		next, _ = v["@iot.nextLink"].(string)
	}
	want := ids(func() map[string]any {
		_, v, _ := get(t, newHandler(fixture(t), nil), "/sta/v1.1/Observations")
		return v
	}(), "value")
	if !reflect.DeepEqual(got, want) || len(want) != 10 {
		t.Fatalf("paged under the scan bound: %q\nwant %q", got, want)
	}
}

// TestHandler_answersAreJSON: every body is valid JSON with the right
// content type.
func TestHandler_answersAreJSON(t *testing.T) {
	h := newHandler(fixture(t), nil)
	for _, u := range []string{"/sta/v1.1/", "/sta/v1.1/Datastreams?$expand=Observations($top=2),Thing,Sensor,ObservedProperty", "/sta/v1.1/Things?$filter=%zz"} {
		r := httptest.NewRequest(http.MethodGet, u, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("GET %s: %s %s", u, ct, w.Body)
		}
	}
}

// withholding is a registry whose privacy rule withholds private
// positions altogether (a chain without a privacy stage).
type withholding struct{ fakeRegistry }

func (w withholding) PublicLocation(st enrich.Station) (float64, float64, bool) {
	if !st.Public {
		return 0, 0, false
	}
	return w.fakeRegistry.PublicLocation(st)
}

// TestHandler_locationsNeverLeak: a registered station is placed only
// where the registry's privacy rule allows, even when its points report a
// position; an unregistered station where it reports to be.
func TestHandler_locationsNeverLeak(t *testing.T) {
	st := fixture(t)
	pos := func(id string, lat, lon float64) protocols.Point {
		return point("station", t0, map[string]string{"station": id}, map[string]protocols.Value{"lat": protocols.Float(lat), "lon": protocols.Float(lon)})
	}
	if _, err := st.Write([]protocols.Point{pos("s0002", 48.21221, 16.29924), pos("z0009", 48.5, 16.5)}); err != nil {
		t.Fatal(err)
	}
	h := newHandler(st, func(o *Options) { o.Registry = withholding{testRegistry} })
	code, _, body := get(t, h, "/sta/v1.1/Locations?$select=@iot.id,location")
	want := `{"value":[{"@iot.id":"s0001","location":{"type":"Point","coordinates":[16.29957,48.20511]}},` +
		`{"@iot.id":"s0003","location":{"type":"Point","coordinates":[16.39569,48.23791]}},` +
		`{"@iot.id":"z0009","location":{"type":"Point","coordinates":[16.5,48.5]}}]}`
	if code != 200 || strings.TrimSpace(body) != want {
		t.Fatalf("%d %s\nwant %s", code, body, want)
	}
	if code, v, _ := get(t, h, "/sta/v1.1/FeaturesOfInterest('s0002')?$select=feature"); code != 200 || v["feature"] != nil {
		t.Fatalf("s0002 feature = %v", v)
	}
}
