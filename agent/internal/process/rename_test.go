package process

import (
	"fmt"
	"strings"
	"testing"

	"github.com/citysense/citysense/protocols"
)

func TestRename_Process(t *testing.T) {
	tests := []struct {
		name, list, in, want string
		collision            uint64
	}{
		{
			name: "measurement and fields",
			list: "  - {type: rename, measurement: {meteo: weather}, fields: {temp: temperature, hum: humidity}}\n",
			in:   "meteo,station=s1 temp=20,hum=50,wind=3 0\nair temp=1 0",
			want: "weather,station=s1 temperature=20,humidity=50,wind=3 0\nair temperature=1 0",
		},
		{
			name: "renames happen at once: a swap",
			list: "  - {type: rename, fields: {a: b, b: a}}\n",
			in:   "m a=1,b=2 0",
			want: "m b=1,a=2 0",
		},
		{
			name:      "a renamed field replaces one already there",
			list:      "  - {type: rename, fields: {temp: temperature}}\n",
			in:        "m temperature=1,temp=2 0",
			want:      "m temperature=2 0",
			collision: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv()
			c := mustParse(t, tt.list, env)
			equalLines(t, "Process", c.Process(points(t, tt.in)), tt.want)
			if got := dropped(env.Metrics, "processors-0", "collision"); got != tt.collision {
				t.Errorf("dropped{collision} = %d, want %d", got, tt.collision)
			}
		})
	}
}

// More than 64 fields take markSet's slow path; the result must be the same.
func TestRename_Process_manyFields(t *testing.T) {
	var fs []string
	for i := range 80 {
		fs = append(fs, fmt.Sprintf("f%02d=%d", i, i))
	}
	env, _ := testEnv()
	c := mustParse(t, "  - {type: rename, fields: {f70: f05}}\n", env)
	out := c.Process(points(t, "m "+strings.Join(fs, ",")+" 0"))
	if len(out) != 1 || len(out[0].Fields) != 79 {
		t.Fatalf("got %v", lines(out))
	}
	if v, _ := out[0].Field("f05"); v != protocols.Float(70) {
		t.Errorf("f05 = %v, want 70", v)
	}
}
