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
	if err := l.lanesd.API.Call(context.Background(), method, path, body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// status is GET /api/status.
func (l *server) status() (*api.Status, error) {
	st, err := l.lanesd.API.Status(context.Background())
	if err != nil {
		return nil, fmt.Errorf("GET /api/status: %w", err)
	}
	return st, nil
}

// workerPIDs returns the pids of lane name's workers in every state but
// dead.
func workerPIDs(st *api.Status, name string) []int {
	var pids []int
	if ln := st.Lane(name); ln != nil {
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
	ms, err := l.lanesd.API.Mappings(context.Background())
	if err != nil {
		return nil, fmt.Errorf("GET /api/map: %w", err)
	}
	return ms, nil
}
