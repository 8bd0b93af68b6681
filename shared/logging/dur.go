package logging

import (
	"strconv"
	"time"
)

// Dur is a duration as a log value: hclog's text format prints it as
// time.Duration does ("2.000875s", through fmt's %v), and its JSON format
// as seconds in a number (2.000875), as Prometheus and log tools expect. A
// plain time.Duration reaches JSON as integer nanoseconds.
type Dur time.Duration

func (d Dur) String() string { return time.Duration(d).String() }

// MarshalJSON writes d in seconds.
func (d Dur) MarshalJSON() ([]byte, error) {
	return AppendSeconds(nil, time.Duration(d)), nil
}

// AppendSeconds appends d in seconds, with up to nanosecond precision and
// no trailing zeros ("0.000021", "2", "0").
func AppendSeconds(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, d.Seconds(), 'f', -1, 64)
}
