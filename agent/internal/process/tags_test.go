package process

import (
	"testing"

	"github.com/citysense/citysense/protocols"
)

func TestTags_Process(t *testing.T) {
	tests := []struct {
		name, list, in, want string
	}{
		{
			name: "add keeps the set sorted and replaces a value",
			list: "  - {type: tags, add: {site: depot-3, area: north}}\n",
			in:   "air,station=s1 v=1 0\nair,site=old,zone=z v=1 0\nair v=1 0",
			want: "air,area=north,site=depot-3,station=s1 v=1 0\nair,area=north,site=depot-3,zone=z v=1 0\nair,area=north,site=depot-3 v=1 0",
		},
		{
			name: "rename re-sorts",
			list: "  - {type: tags, rename: {st: station}}\n",
			in:   "air,district=d1,st=s1,zone=z v=1 0",
			want: "air,district=d1,station=s1,zone=z v=1 0",
		},
		{
			name: "a renamed tag replaces one already there",
			list: "  - {type: tags, rename: {st: station}}\n",
			in:   "air,st=s1,station=old v=1 0",
			want: "air,station=s1 v=1 0",
		},
		{
			name: "renames happen at once: a swap",
			list: "  - {type: tags, rename: {a: b, b: a}}\n",
			in:   "m,a=1,b=2 v=1 0",
			want: "m,a=2,b=1 v=1 0",
		},
		{
			name: "rename, then delete, then add",
			list: "  - {type: tags, rename: {debug: dbg}, delete: [dbg, tmp], add: {dbg: \"no\"}}\n",
			in:   "m,debug=yes,station=s1,tmp=x v=1 0",
			want: "m,dbg=no,station=s1 v=1 0",
		},
		{
			name: "measurement selector",
			list: "  - {type: tags, measurement: [air], add: {kind: aq}}\n",
			in:   "air v=1 0\nnoise v=1 0",
			want: "air,kind=aq v=1 0\nnoise v=1 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			out := c.Process(points(t, tt.in))
			equalLines(t, "Process", out, tt.want)
			for i := range out {
				if err := out[i].Validate(); err != nil {
					t.Errorf("point %d: %v", i, err)
				}
			}
		})
	}
}

// Adding tags must not write into the next point's tags when points are
// cut from one backing array, as the codec and the simulator do.
func TestTags_Process_sharedBackingArray(t *testing.T) {
	backing := []protocols.Tag{{Key: "station", Value: "s1"}, {Key: "station", Value: "s2"}}
	pts := []protocols.Point{
		{Measurement: "m", Tags: backing[0:1:1], Fields: []protocols.Field{{Key: "v", Value: protocols.Int(1)}}, Time: t0.UnixNano()},
		{Measurement: "m", Tags: backing[1:2:2], Fields: []protocols.Field{{Key: "v", Value: protocols.Int(2)}}, Time: t0.UnixNano()},
	}
	env, _ := testEnv()
	c := mustParse(t, "  - {type: tags, add: {zone: z}}\n", env)
	equalLines(t, "Process", c.Process(pts), "m,station=s1,zone=z v=1i 0\nm,station=s2,zone=z v=2i 0")
}
