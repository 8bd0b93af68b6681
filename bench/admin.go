package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/lanes-dev/lanes/shared/api"
)

// The admin API as the bench uses it: lanesd's own account of its lanes,
// workers and mappings, and the calls an operator makes under load.

var adminClient = &http.Client{Timeout: 10 * time.Second}

// adminCall sends method path with body (JSON-encoded, nil for none) to
// l's admin listener and decodes a 2xx answer into out (nil: discard),
// through the admin API's one client.
func (l *server) adminCall(method, path string, body, out any) error {
	c := &api.Client{Base: "http://" + l.admin, HTTP: adminClient}
	if err := c.Call(context.Background(), method, path, body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// status is GET /api/status.
func (l *server) status() (*api.Status, error) {
	var st api.Status
	return &st, l.adminCall("GET", "/api/status", nil, &st)
}

// lane returns the lane named name in st, or nil.
func laneStatus(st *api.Status, name string) *api.Lane {
	for i := range st.Lanes {
		if st.Lanes[i].Name == name {
			return &st.Lanes[i]
		}
	}
	return nil
}

// workerPIDs returns the pids of lane name's workers in every state but
// dead.
func workerPIDs(st *api.Status, name string) []int {
	var pids []int
	if ln := laneStatus(st, name); ln != nil {
		for _, w := range ln.Workers {
			if w.State != "dead" {
				pids = append(pids, w.PID)
			}
		}
	}
	return pids
}

// mappings is GET /api/map.
func (l *server) mappings() ([]api.Mapping, error) {
	var ms []api.Mapping
	return ms, l.adminCall("GET", "/api/map", nil, &ms)
}
