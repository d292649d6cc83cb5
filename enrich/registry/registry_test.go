package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/citysense/citysense/enrich"
	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
	"github.com/citysense/citysense/protocols/sim"
)

func TestParseYAML_Defaults(t *testing.T) {
	sts, err := ParseYAML("s.yaml", []byte(`
stations:
  - {id: a, name: A, lat: 48.2, lon: 16.3, altitude: 170, district: d01, model: M, owner: O, licence: CC0-1.0}
  - {id: b, public: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Station{
		{ID: "a", Name: "A", Lat: 48.2, Lon: 16.3, Located: true, Altitude: 170, District: "d01", Model: "M", Owner: "O", Licence: "CC0-1.0", Public: true},
		{ID: "b"},
	}
	if len(sts) != 2 || sts[0] != want[0] || sts[1] != want[1] {
		t.Fatalf("got %+v\nwant %+v", sts, want)
	}
}

func TestParseYAML_ProblemsWithLines(t *testing.T) {
	_, err := ParseYAML("s.yaml", []byte(`stations:
  - id: a
    lat: 91
    lon: 16
  - id: a
  - id: ""
    lat: 48
  - id: c
    colour: red
`))
	got := errString(err)
	for _, w := range []string{
		"s.yaml:3: stations[0].lat: 91 is outside -90…90",
		`s.yaml:5: stations[1].id: "a" appears twice (first at line 2)`,
		"s.yaml:6: stations[2].id: must not be empty",
		"s.yaml:7: stations[2].lat: give both lat and lon",
		`s.yaml:9: stations[3].colour: unknown key "colour"`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestParseCSV(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Station
		err      []string
	}{
		{name: "columns in any order", in: "lat,id,lon,public,district\n48.2,a,16.3,,d01\n,b,,false,\n",
			want: []Station{{ID: "a", Lat: 48.2, Lon: 16.3, Located: true, District: "d01", Public: true}, {ID: "b"}}},
		{name: "header problems", in: "id,colour,lat\n", err: []string{`s.csv:1: unknown column "colour"`, "s.csv:1: give both lat and lon columns"}},
		{name: "missing id column", in: "name\nx\n", err: []string{"s.csv:1: missing column id"}},
		{name: "row problems", in: "id,lat,lon,public\na,48,16,maybe\na,48,16,\nb,48,,\nc,x,16,\n,1,1,\n", err: []string{
			`s.csv:2: public "maybe": want true or false`,
			`s.csv:3: station "a" appears twice (first at line 2)`,
			"s.csv:4: give both lat and lon",
			`s.csv:5: lat "x": want a number`,
			"s.csv:6: empty id",
		}},
		{name: "empty file", in: "", err: []string{"s.csv:1: no header row"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts, err := ParseCSV("s.csv", []byte(tc.in))
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(sts) != len(tc.want) {
					t.Fatalf("got %+v", sts)
				}
				for i := range sts {
					if sts[i] != tc.want[i] {
						t.Fatalf("station %d = %+v, want %+v", i, sts[i], tc.want[i])
					}
				}
				return
			}
			for _, w := range tc.err {
				if !strings.Contains(errString(err), w) {
					t.Errorf("missing %q in\n%v", w, err)
				}
			}
		})
	}
}

func newRegistry(t *testing.T, file, content string) (*Registry, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New()
	r.File = file
	return r, r.Init(enrich.Env{Dir: dir, Name: "registry"})
}

func TestRegistry_Init_Errors(t *testing.T) {
	r := New()
	var p confx.Problem
	if err := r.Init(enrich.Env{}); !errors.As(err, &p) || p.Path != "file" {
		t.Fatalf("no file: %v", err)
	}
	r.File = "missing.yaml"
	if err := r.Init(enrich.Env{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "open registry") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := newRegistry(t, "s.csv", "id,lat\n"); err == nil {
		t.Fatal("bad csv accepted")
	}
}

func TestRegistry_Enrich(t *testing.T) {
	r, err := newRegistry(t, "s.csv", "id,district\ns1,north\ns2,\n")
	if err != nil {
		t.Fatal(err)
	}
	f := []protocols.Field{{Key: "v", Value: protocols.Float(1)}}
	mk := func(tags ...string) protocols.Point {
		p := protocols.Point{Measurement: "air", Fields: f[:1:1]}
		for i := 0; i+1 < len(tags); i += 2 {
			p.SetTag(tags[i], tags[i+1])
		}
		return p
	}
	pts := []protocols.Point{
		mk("station", "s1"),                     // gets its district
		mk("district", "kept", "station", "s1"), // keeps its own
		mk("station", "s2"),                     // known, no district in the registry
		mk("station", "zz"),                     // unknown: flagged, kept
		mk("other", "x"),                        // no station tag: untouched
	}
	out, err := r.Enrich(pts)
	if err != nil || len(out) != 5 {
		t.Fatalf("out = %d points, %v", len(out), err)
	}
	wantDistrict := []string{"north", "kept", "", "", ""}
	wantQC := []uint64{0, 0, 0, enrich.PointUnknownStation, 0}
	for i := range out {
		d, _ := out[i].Tag("district")
		if d != wantDistrict[i] || enrich.Flags(&out[i], "qc") != wantQC[i] {
			t.Errorf("point %d: district %q qc %d, want %q %d", i, d, enrich.Flags(&out[i], "qc"), wantDistrict[i], wantQC[i])
		}
		if err := out[i].Validate(); err != nil {
			t.Errorf("point %d: %v", i, err)
		}
	}
}

func TestRegistry_Put_ReplacesAtomically(t *testing.T) {
	r, err := newRegistry(t, "s.yaml", "stations:\n  - {id: b, lat: 1, lon: 2}\n  - {id: a}\n")
	if err != nil {
		t.Fatal(err)
	}
	before := r.All()
	if err := r.Put(Station{ID: "c", Public: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Station{ID: "b", Name: "renamed"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Station{ID: "x", Located: true, Lat: 100}); err == nil {
		t.Fatal("invalid station accepted")
	}
	var ids []string
	for _, st := range r.All() {
		ids = append(ids, st.ID)
	}
	if strings.Join(ids, ",") != "a,b,c" || len(before) != 2 {
		t.Fatalf("ids = %v, before = %v", ids, before)
	}
	if st, _ := r.Get("b"); st.Name != "renamed" || st.Located {
		t.Fatalf("b = %+v", st)
	}
	if err := r.Replace([]Station{{ID: "q"}, {ID: "q"}}); err == nil || r.Len() != 3 {
		t.Fatalf("duplicate replace: %v, len %d", err, r.Len())
	}
}

func TestRegistry_Enrich_ConcurrentWithPut(t *testing.T) {
	r, err := newRegistry(t, "s.csv", "id,district\ns1,n\n")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			_ = r.Put(Station{ID: "s1", District: "n"})
		}
	}()
	f := []protocols.Field{{Key: "v", Value: protocols.Float(1)}}
	for i := 0; i < 200; i++ {
		out, _ := r.Enrich([]protocols.Point{{Measurement: "m", Tags: []protocols.Tag{{Key: "station", Value: "s1"}}, Fields: f}})
		if d, _ := out[0].Tag("district"); d != "n" {
			t.Fatalf("district = %q", d)
		}
	}
	<-done
}

// TestDemoStations checks configs/demo/stations.yaml against the simulator:
// the 50 stations at exactly sim.Position(1, i), in sim.District.
func TestDemoStations(t *testing.T) {
	sts, err := LoadFile("../../configs/demo/stations.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 50 {
		t.Fatalf("%d stations, want 50", len(sts))
	}
	private := 0
	for i, st := range sts {
		lat, lon := sim.Position(1, i+1)
		if st.ID != sim.StationID(i+1) || st.Lat != lat || st.Lon != lon || !st.Located || st.District != sim.District(lat, lon) || st.Name == "" || st.Model == "" {
			t.Errorf("station %d = %+v, want %s at %v,%v in %s", i, st, sim.StationID(i+1), lat, lon, sim.District(lat, lon))
		}
		if !st.Public {
			private++
		}
	}
	if private < 2 {
		t.Errorf("%d private stations, want at least 2", private)
	}
}
