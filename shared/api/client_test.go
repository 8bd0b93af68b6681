package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
