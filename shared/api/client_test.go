package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"missing or wrong token"}`))
			return
		}
		switch r.URL.Path {
		case "/api/status":
			w.Write([]byte(`{"pid":42,"lanes":[{"name":"default"}]}`))
		case "/api/reload":
			w.WriteHeader(http.StatusUnprocessableEntity)
			w.Write([]byte(`{"error":"config has errors","diagnostics":["lanes.hcl:3,7: Invalid duration"]}`))
		case "/api/events":
			w.Write([]byte(`[{"id":` + r.URL.Query().Get("since") + `0,"kind":"kill"}]`))
		case "/api/samples":
			q := r.URL.Query()
			w.Write([]byte(`{"seq":` + q.Get("since") + `1,"lanes":[{"lane":"` + q.Get("lane") + `","samples":[{"seq":1,"rps":{"5xx":2.5}}]}]}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	var raw bytes.Buffer
	c := &Client{Base: srv.URL, Token: "s3cret", Raw: &raw}
	st, err := c.Status(ctx)
	if err != nil || st.PID != 42 || len(st.Lanes) != 1 || !strings.Contains(raw.String(), `"pid":42`) {
		t.Fatalf("Status: %+v %v raw %q", st, err, raw.String())
	}
	if es, err := c.Events(ctx, 7); err != nil || len(es) != 1 || es[0].ID != 70 {
		t.Fatalf("Events(7): %+v %v", es, err)
	}
	if sm, err := c.Samples(ctx, "slow lane", 4); err != nil || sm.Seq != 41 || len(sm.Lanes) != 1 || sm.Lanes[0].Lane != "slow lane" ||
		len(sm.Lanes[0].Samples) != 1 || sm.Lanes[0].Samples[0].RPS == nil || sm.Lanes[0].Samples[0].RPS.S5xx != 2.5 {
		t.Fatalf("Samples(slow lane, 4): %+v %v", sm, err)
	}
	_, err = c.Reload(ctx)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != 422 || len(se.Body.Diagnostics) != 1 || !strings.Contains(err.Error(), "config has errors") {
		t.Fatalf("Reload refused: %v", err)
	}
	c.Token = ""
	if _, err := c.Status(ctx); !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("without the token: %v", err)
	}
	srv.Close()
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "cannot reach the lanes admin API") {
		t.Fatalf("lanesd gone: %v", err)
	}
}

func TestClientMetricsAndCalls(t *testing.T) {
	var got []string // method, path and body of each call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		switch r.URL.Path {
		case "/metrics":
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, "lanes_up 1\nlanes_served_total{lane=\"default\"} 3\n")
		case "/api/lanes/a b/resize":
			io.WriteString(w, `{"lane":"a b","min_workers":2,"max_workers":4}`)
		case "/api/map":
			if r.Method == http.MethodDelete {
				io.WriteString(w, `{"method":"GET","pattern":"/x","removed":true}`)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no lane \"nope\""}`)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := &Client{Base: srv.URL, Token: "tok"}
	m, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(m, `lanes_served_total{lane="default"} 3`) {
		t.Fatalf("Metrics: %q %v", m, err)
	}
	two := 2
	if r, err := c.Resize(ctx, "a b", ResizeRequest{MinWorkers: &two}); err != nil || r.Lane != "a b" || r.MinWorkers != 2 || r.MaxWorkers != 4 {
		t.Fatalf("Resize: %+v %v", r, err)
	}
	if r, err := c.Unmap(ctx, UnmapRequest{Method: "GET", Pattern: "/x"}); err != nil || !r.Removed {
		t.Fatalf("Unmap: %+v %v", r, err)
	}
	_, err = c.Map(ctx, MapRequest{Lane: "nope", Method: "GET", Pattern: "/x"})
	var se *ServerError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound || se.Body.Error != `no lane "nope"` {
		t.Fatalf("Map to an unknown lane: %v", err)
	}
	want := []string{
		"GET /metrics ",
		`POST /api/lanes/a b/resize {"min_workers":2}`,
		`DELETE /api/map {"method":"GET","pattern":"/x"}`,
		`POST /api/map {"lane":"nope","method":"GET","pattern":"/x"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c.Token = ""
	if _, err := c.Metrics(ctx); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Errorf("Metrics without the token: %v", err)
	}
}

func TestStatusLookups(t *testing.T) {
	st := &Status{
		Lanes: []Lane{
			{Name: "default", Workers: []Worker{{PID: 1, State: "ready"}, {PID: 2, State: "starting"}, {PID: 3, State: "ready"}}},
			{Name: "slow"},
		},
		Themes: []Theme{{Name: "site", State: "fresh"}},
	}
	ln := st.Lane("default")
	if ln == nil {
		t.Fatal(`Lane("default") = nil`)
	}
	if got := ln.PIDs("ready"); !slices.Equal(got, []int{1, 3}) {
		t.Errorf(`PIDs("ready") = %v`, got)
	}
	if got := ln.PIDs(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("PIDs() = %v", got)
	}
	if got := ln.PIDs("dead"); got != nil {
		t.Errorf(`PIDs("dead") = %v`, got)
	}
	ln.Served = 9 // a pointer into st
	if st.Lanes[0].Served != 9 {
		t.Error("Lane returns a copy, want the lane in the status")
	}
	if st.Lane("nope") != nil || st.Theme("nope") != nil {
		t.Error("lookup of a missing name is not nil")
	}
	if th := st.Theme("site"); th == nil || th.State != "fresh" {
		t.Errorf(`Theme("site") = %+v`, th)
	}
}
