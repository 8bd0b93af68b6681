package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func printStatus(w io.Writer, st api.Status, now time.Time) error {
	fmt.Fprintf(w, "lanesd pid %d, up %s, listening on %s", st.PID, seconds(st.UptimeS), st.Listen)
	if st.Config != "" {
		fmt.Fprintf(w, ", config %s", st.Config)
	}
	fmt.Fprint(w, "\n\n")

	tw := table(w)
	fmt.Fprintln(tw, "LANE\tSTATE\tREADY/MIN/MAX\tINFLIGHT\tQUEUED\tSERVED\tREJECTED\tTIMEOUTS\tKILLED\tRESPAWNS\tDRAINS\tP50ms\tP99ms")
	for _, l := range st.Lanes {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d/%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\n", l.Name, laneState(l),
			ready(l), l.MinWorkers, l.MaxWorkers, l.Inflight, l.Queued, l.Served, l.Rejected, l.Timeouts,
			l.Killed, l.Respawns, l.Drains, l.Latency.P50, l.Latency.P99)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = table(w)
	fmt.Fprintln(tw, "LANE\tPID\tSTATE\tINFLIGHT\tSERVED\tRSS\tUPTIME")
	for _, l := range st.Lanes {
		for _, wk := range l.Workers {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", l.Name, wk.PID, wk.State, wk.Inflight, wk.Served, mib(wk.RSS), seconds(wk.UptimeS))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if a := st.AutoMap; a != nil {
		fmt.Fprintf(w, "\nauto_map: slower than %s from %s to lane %s; %d/%d entries, learned %d, forgotten %d, evicted %d\n",
			a.Threshold, strings.Join(a.From, ","), a.Lane, a.Entries, a.MaxEntries, a.Learned, a.Forgotten, a.Evicted)
	}
	if f := st.Fetchd; f.Enabled {
		fmt.Fprintf(w, "\nfetchd: %s, pid %d, %d restarts, cache %d entries %s", f.State, f.PID, f.Restarts, f.CacheEntries, mib(f.CacheBytes))
		if f.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", f.LastError)
		}
		fmt.Fprintln(w)
	}
	if len(st.Themes) > 0 {
		fmt.Fprintln(w)
		tw = table(w)
		fmt.Fprintln(tw, "THEME\tSTATE\tAGE\tVERSION\tLAST FETCH\tFETCHES\tFAILURES\tSTALE SERVES\tUNTHEMED SERVES\tLAST ERROR")
		for _, t := range st.Themes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", t.Name, t.State, seconds(t.AgeS), dash(t.Version),
				ago(t.LastFetch, now), t.Fetches, t.Failures, t.StaleServes, t.UnthemedServes, dash(t.LastError))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r := st.Reload; r != nil {
		t := r.At
		if r.OK {
			fmt.Fprintf(w, "\nlast reload %s: ok, %d changes\n", ago(&t, now), len(r.Changed))
		} else {
			fmt.Fprintf(w, "\nlast reload %s: refused: %s\n", ago(&t, now), r.Error)
		}
	}
	return nil
}

func printMappings(w io.Writer, ms []api.Mapping, now time.Time) error {
	tw := table(w)
	fmt.Fprintln(tw, "LANE\tMETHOD\tPATTERN\tSOURCE\tHITS\tADDED\tLAST HIT")
	for _, m := range ms {
		src := m.Source
		if src == "" {
			src = api.SourceConfig
			if m.Dynamic {
				src = "dynamic"
			}
		}
		added := m.Added
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.Lane, m.Method, m.Pattern, src, m.Hits, ago(&added, now), ago(m.LastHit, now))
	}
	return tw.Flush()
}

func ready(l api.Lane) int {
	n := 0
	for _, wk := range l.Workers {
		if wk.State == "ready" {
			n++
		}
	}
	return n
}

func laneState(l api.Lane) string {
	switch {
	case l.CrashLoop:
		if l.LastExit != "" {
			return "crash loop (" + l.LastExit + ")"
		}
		return "crash loop"
	case l.Draining:
		return "draining"
	case l.State != "":
		return l.State
	}
	return "ok"
}

func seconds(s float64) string {
	return (time.Duration(s) * time.Second).String()
}

func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := now.Sub(*t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func mib(b int64) string {
	return fmt.Sprintf("%.1fMB", float64(b)/(1<<20))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
