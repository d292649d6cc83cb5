package process

import (
	"testing"
)

func TestScale_Process(t *testing.T) {
	tests := []struct {
		name, list, in, want string
		nonFinite, collision uint64
	}{
		{
			name: "factor and rename; ints become floats",
			list: "  - {type: scale, fields: {power_w: {factor: 0.001, rename: power_kw}}}\n",
			in:   "energy power_w=1500i,status=\"ok\" 0",
			want: "energy power_kw=1.5,status=\"ok\" 0",
		},
		{
			name: "offset, first matching pattern in the order written",
			list: `  - type: scale
    fields:
      temp_f: {factor: 0.5, offset: -16}
      "temp_*": {factor: 10}
`,
			in:   "w temp_f=50,temp_k=2,other=7 0",
			want: "w temp_f=9,temp_k=20,other=7 0",
		},
		{
			name: "a pure rename keeps the type",
			list: "  - {type: scale, fields: {cnt: {rename: count}}}\n",
			in:   "traffic cnt=12i 0",
			want: "traffic count=12i 0",
		},
		{
			name: "bools and strings are not scaled",
			list: "  - {type: scale, fields: {'*': {factor: 2}}}\n",
			in:   "m a=true,b=\"x\",c=3u 0",
			want: "m a=true,b=\"x\",c=6 0",
		},
		{
			name:      "a result beyond float64 is dropped",
			list:      "  - {type: scale, fields: {'*': {factor: 1e300}}}\n",
			in:        "m a=1e10,b=2 0\nm a=1e300 0",
			want:      "m b=2e+300 0",
			nonFinite: 2,
		},
		{
			name:      "the renamed field replaces one already there",
			list:      "  - {type: scale, fields: {power_w: {factor: 0.001, rename: power_kw}}}\n",
			in:        "energy power_kw=9,power_w=2000 0",
			want:      "energy power_kw=2 0",
			collision: 1,
		},
		{
			name: "measurement selector",
			list: "  - {type: scale, measurement: [energy], fields: {v: {factor: 2}}}\n",
			in:   "energy v=1 0\nair v=1 0",
			want: "energy v=2 0\nair v=1 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			equalLines(t, "Process", c.Process(points(t, tt.in)), tt.want)
			if got := dropped(env.Metrics, "processors-0", "non_finite"); got != tt.nonFinite {
				t.Errorf("dropped{non_finite} = %d, want %d", got, tt.nonFinite)
			}
			if got := dropped(env.Metrics, "processors-0", "collision"); got != tt.collision {
				t.Errorf("dropped{collision} = %d, want %d", got, tt.collision)
			}
		})
	}
}
