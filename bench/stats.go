package main

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// sample is one request's latency. A censored sample is a request that had
// not finished when the run was cut off: its true latency is at least d.
type sample struct {
	d        time.Duration
	censored bool
}

// dist is a latency distribution kept as every sample: runs are short
// enough (at most a few hundred thousand requests) that exact percentiles
// cost nothing worth saving.
type dist struct {
	s      []sample
	sorted bool
}

func (d *dist) add(x time.Duration, censored bool) {
	d.s = append(d.s, sample{x, censored})
	d.sorted = false
}

func (d *dist) merge(o *dist) {
	d.s = append(d.s, o.s...)
	d.sorted = false
}

func (d *dist) n() int { return len(d.s) }

// pct returns the p-th percentile (0 < p ≤ 100) by nearest rank. The
// sample found may be censored, and then the percentile is a lower bound.
func (d *dist) pct(p float64) (sample, bool) {
	if len(d.s) == 0 {
		return sample{}, false
	}
	if !d.sorted {
		slices.SortFunc(d.s, func(a, b sample) int {
			switch {
			case a.d < b.d:
				return -1
			case a.d > b.d:
				return 1
			}
			return 0
		})
		d.sorted = true
	}
	i := int(p/100*float64(len(d.s))+0.999999) - 1
	return d.s[min(max(i, 0), len(d.s)-1)], true
}

// pctString formats a percentile for a table: "2.1ms", "≥4.2s" when
// censored, "-" without samples.
func (d *dist) pctString(p float64) string {
	s, ok := d.pct(p)
	if !ok {
		return "-"
	}
	if s.censored {
		return "≥" + fmtDur(s.d)
	}
	return fmtDur(s.d)
}

// fmtDur formats a latency with three significant digits: 850µs, 2.13ms,
// 41.2ms, 1.52s.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
}

// ratio formats a/b as "12.3×", or "-" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	r := a / b
	if r >= 100 {
		return fmt.Sprintf("%.0f×", r)
	}
	if r >= 10 {
		return fmt.Sprintf("%.1f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// verdict marks a target as met or missed.
func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

// noteFailure keeps the first failure of a run in *first: the transport
// error, or the status when there was none.
func noteFailure(first *string, status int, err error) {
	switch {
	case *first != "":
	case err != nil:
		*first = err.Error()
	default:
		*first = "status " + strconv.Itoa(status)
	}
}
