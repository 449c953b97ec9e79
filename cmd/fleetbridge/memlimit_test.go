package main

import (
	"testing"

	"github.com/fleetbridge/fleetbridge/plugin"
)

func TestGoMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		limit   string
		envSet  bool
		want    int64
		wantErr bool
	}{
		{limit: "", want: 0},
		{limit: "512Mi", want: 483183820},
		{limit: "536870912", want: 483183820}, // the downward API gives bytes
		{limit: "1G", want: 900000000},
		{limit: "512Mi", envSet: true, want: 0}, // GOMEMLIMIT wins
		{limit: "lots", wantErr: true},
		{limit: "0", wantErr: true},
		{limit: "-1Gi", wantErr: true},
	} {
		got, err := goMemoryLimit(tc.limit, tc.envSet)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("goMemoryLimit(%q, %v) = %d, %v; want %d, error %v", tc.limit, tc.envSet, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestMaxAnswerBytes(t *testing.T) {
	chart, _ := goMemoryLimit("512Mi", false)
	for _, tc := range []struct{ limit, want int64 }{
		{0, plugin.DefaultMaxAnswerBytes},
		{chart, chart / 4},
		{2 << 20, 1 << 20},
	} {
		if got := maxAnswerBytes(tc.limit); got != tc.want {
			t.Errorf("limit %d: %d, want %d", tc.limit, got, tc.want)
		}
	}
}
