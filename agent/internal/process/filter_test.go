package process

import (
	"math"
	"testing"

	"github.com/citysense/citysense/protocols"
)

func TestFilter_Process(t *testing.T) {
	const in = `
air,district=d01,station=s1 pm25=12,pm10=20,debug_raw=3i 0
air,district=d02,station=test-7 pm25=13 0
noise,district=d01,station=s1 laeq=55 0
traffic,district=d01,station=s1 count=10i 0
air,district=d03,station=s2 pm25=-4,pm10=2000,ok=true 0
`
	tests := []struct {
		name    string
		list    string
		want    string
		dropped map[string]uint64
	}{
		{
			name: "include measurement",
			list: "  - {type: filter, include: {measurement: [air, noise]}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20,debug_raw=3i 0
air,district=d02,station=test-7 pm25=13 0
noise,district=d01,station=s1 laeq=55 0
air,district=d03,station=s2 pm25=-4,pm10=2000,ok=true 0
`,
			dropped: map[string]uint64{"filtered": 1},
		},
		{
			name: "the example of the brief",
			list: "  - {type: filter, include: {measurement: [air, noise]}, exclude: {tags: {station: [test-*]}, fields: [debug_*]}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20 0
noise,district=d01,station=s1 laeq=55 0
air,district=d03,station=s2 pm25=-4,pm10=2000,ok=true 0
`,
			dropped: map[string]uint64{"filtered": 3},
		},
		{
			name: "include tags needs every listed tag",
			list: "  - {type: filter, include: {tags: {district: [d01, d03], station: [s*]}}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20,debug_raw=3i 0
noise,district=d01,station=s1 laeq=55 0
traffic,district=d01,station=s1 count=10i 0
air,district=d03,station=s2 pm25=-4,pm10=2000,ok=true 0
`,
			dropped: map[string]uint64{"filtered": 1},
		},
		{
			name:    "include tags drops points without the tag",
			list:    "  - {type: filter, include: {tags: {kind: ['*']}}}\n",
			want:    "",
			dropped: map[string]uint64{"filtered": 9},
		},
		{
			name: "exclude tags drops on any match",
			list: "  - {type: filter, exclude: {tags: {district: [d02], station: [s2]}}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20,debug_raw=3i 0
noise,district=d01,station=s1 laeq=55 0
traffic,district=d01,station=s1 count=10i 0
`,
			dropped: map[string]uint64{"filtered": 4},
		},
		{
			name: "include fields; a point left without fields goes",
			list: "  - {type: filter, include: {fields: [pm*]}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20 0
air,district=d02,station=test-7 pm25=13 0
air,district=d03,station=s2 pm25=-4,pm10=2000 0
`,
			dropped: map[string]uint64{"filtered": 4},
		},
		{
			name: "ranges of every matching pattern apply, ints too, bools untouched",
			list: "  - {type: filter, range: {pm25: [0, 1000], 'pm*': [-10, 500], count: [0, 5], ok: [5, 6]}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20,debug_raw=3i 0
air,district=d02,station=test-7 pm25=13 0
noise,district=d01,station=s1 laeq=55 0
air,district=d03,station=s2 ok=true 0
`,
			dropped: map[string]uint64{"out_of_range": 3},
		},
		{
			name: "open range",
			list: "  - {type: filter, range: {'*': [0, .inf]}}\n",
			want: `
air,district=d01,station=s1 pm25=12,pm10=20,debug_raw=3i 0
air,district=d02,station=test-7 pm25=13 0
noise,district=d01,station=s1 laeq=55 0
traffic,district=d01,station=s1 count=10i 0
air,district=d03,station=s2 pm10=2000,ok=true 0
`,
			dropped: map[string]uint64{"out_of_range": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			equalLines(t, "Process", c.Process(points(t, in)), tt.want)
			for _, reason := range []string{"filtered", "out_of_range", "non_finite"} {
				if got := dropped(env.Metrics, "processors-0", reason); got != tt.dropped[reason] {
					t.Errorf("dropped{reason=%q} = %d, want %d", reason, got, tt.dropped[reason])
				}
			}
		})
	}
}

func TestFilter_Process_nonFinite(t *testing.T) {
	mk := func() []protocols.Point {
		return []protocols.Point{
			{Measurement: "air", Fields: []protocols.Field{
				{Key: "a", Value: protocols.Float(math.NaN())},
				{Key: "b", Value: protocols.Float(math.Inf(-1))},
				{Key: "c", Value: protocols.Float(1)},
			}, Time: t0.UnixNano()},
			{Measurement: "air", Fields: []protocols.Field{{Key: "a", Value: protocols.Float(math.Inf(1))}}, Time: t0.UnixNano()},
		}
	}
	tests := []struct {
		name, list, want string
		nonFinite        uint64
	}{
		{"dropped by default", "  - {type: filter, range: {'*': [0, 10]}}\n", "air c=1 0", 3},
		{"kept when asked, and not judged by range", "  - {type: filter, drop_non_finite: false, range: {'*': [0, 10]}}\n",
			"air a=NaN,b=-Inf,c=1 0\nair a=+Inf 0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			equalLines(t, "Process", c.Process(mk()), tt.want)
			if got := dropped(env.Metrics, "processors-0", "non_finite"); got != tt.nonFinite {
				t.Errorf("dropped{non_finite} = %d, want %d", got, tt.nonFinite)
			}
		})
	}
}
