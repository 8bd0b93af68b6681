package api

import "time"

// Samples is GET /api/samples[?lane=NAME][&since=SEQ]: each lane's samples
// of the last WindowS seconds, one every IntervalS, oldest first.
type Samples struct {
	IntervalS float64 `json:"interval_s"`
	WindowS   float64 `json:"window_s"`
	// Seq is the last sample's number: poll with since=Seq for newer ones.
	Seq   uint64        `json:"seq"`
	Lanes []LaneSamples `json:"lanes"`
}

// LaneSamples is one lane's samples.
type LaneSamples struct {
	Lane    string   `json:"lane"`
	Samples []Sample `json:"samples"`
}

// Sample is one lane at one moment (the gauges) and over the interval
// before it (the rates and percentiles). Samples taken together share
// their Seq and Time across lanes.
type Sample struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// RPS is the requests answered per second in the interval, by status
	// class (503s of a full queue included); null on a lane's first sample.
	RPS      *StatusRates `json:"rps"`
	Queued   int          `json:"queued"`
	Inflight int          `json:"inflight"`
	Ready    int          `json:"ready"` // workers in rotation (a direct lane: its slots)
	Busy     int          `json:"busy"`  // workers running a request, in rotation or not (a direct lane: slots in use)
	// Of the requests that ended in the interval, in milliseconds; null
	// when none did. The queue wait counts refused requests too.
	QueueWaitP99 *float64 `json:"queue_wait_p99_ms"`
	LatencyP50   *float64 `json:"latency_p50_ms"`
	LatencyP99   *float64 `json:"latency_p99_ms"`
}

// StatusRates are requests per second by status class.
type StatusRates struct {
	S2xx float64 `json:"2xx"`
	S3xx float64 `json:"3xx"`
	S4xx float64 `json:"4xx"`
	S5xx float64 `json:"5xx"`
}
