package store

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

func TestRollupChunk_roundTrip(t *testing.T) {
	hour := int64(time.Hour)
	tests := []struct {
		name string
		bs   []Bucket
	}{
		{"one sample", []Bucket{{Start: 0, Count: 1, Sum: 48.2, Min: 48.2, Max: 48.2, First: 48.2, Last: 48.2, FirstTime: 100, LastTime: 100}}},
		{"two samples", []Bucket{{Start: 0, Count: 2, Sum: 49.2, Min: 1, Max: 48.2, First: 1, Last: 48.2, FirstTime: 10, LastTime: 100}}},
		{"gaps and negatives", []Bucket{
			{Start: 0, Count: 3, Sum: -1.5, Min: -2, Max: 0.5, First: 0.5, Last: -2, FirstTime: 0, LastTime: 59 * 60e9},
			{Start: 5 * hour, Count: 1, Sum: 7, Min: 7, Max: 7, First: 7, Last: 7, FirstTime: 5*hour + 1, LastTime: 5*hour + 1},
		}},
		{"not decimal", []Bucket{{Start: hour, Count: 2, Sum: math.Pi + 1, Min: 1, Max: math.Pi, First: math.Pi, Last: 1, FirstTime: hour, LastTime: hour + 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams := encodeRollupChunk(tt.bs, 0, hour)
			got, err := decodeRollupChunk(streams, 0, hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.bs) {
				t.Errorf("got  %+v\nwant %+v", got, tt.bs)
			}
		})
	}
}

var _ = protocols.KindFloat
