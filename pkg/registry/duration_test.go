package registry

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"60", time.Minute, true},
		{" 60 ", time.Minute, true},
		{"0", 0, true},
		{"60s", time.Minute, true},
		{"2m", 2 * time.Minute, true},
		{"1m30s", 90 * time.Second, true},
		{"1.5s", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"-5s", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{"60 s", 0, false},
		{"99999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
