package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Client calls the admin API of one lanesd: lanectl, the bench and the
// integration tests use it, so the API has one client beside its types.
type Client struct {
	// Base is the admin listener's URL, "http://127.0.0.1:8081".
	Base string
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// HTTP is the client to use; nil: http.DefaultClient.
	HTTP *http.Client
	// Raw, when set, receives the body of every 2xx answer as it came
	// (lanectl -json), besides its decoding.
	Raw io.Writer
}

// ServerError is lanesd's refusal of a call: its HTTP status and its
// {"error": ..., "diagnostics": [...]} body.
type ServerError struct {
	Code   int
	Status string // "409 Conflict"
	Body   ErrorBody
}

func (e *ServerError) Error() string {
	if e.Body.Error == "" {
		return "lanesd answered " + e.Status
	}
	return e.Body.Error + " (" + e.Status + ")"
}

// maxAnswer bounds what is read of one answer.
const maxAnswer = 64 << 20

// Call sends in (if not nil) as JSON to method path and decodes a 2xx
// answer into out (if not nil). A non-2xx answer is a *ServerError; a
// lanesd that cannot be reached is an error that says so.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	raw, err := c.do(req, method, path)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// newRequest is method path with body (JSON, nil for none) and the token.
func (c *Client) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// do sends req and returns the body of a 2xx answer (copied to Raw); a
// non-2xx answer is a *ServerError.
func (c *Client) do(req *http.Request, method, path string) ([]byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the method and URL
		}
		return nil, fmt.Errorf("cannot reach the lanes admin API at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		se := &ServerError{Code: resp.StatusCode, Status: resp.Status}
		if json.Unmarshal(raw, &se.Body) != nil {
			se.Body = ErrorBody{}
		}
		return nil, se
	}
	if c.Raw != nil {
		if _, err := c.Raw.Write(raw); err != nil {
			return nil, err
		}
		if !bytes.HasSuffix(raw, []byte("\n")) {
			_, _ = io.WriteString(c.Raw, "\n")
		}
	}
	return raw, nil
}

// Status is GET /api/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.Call(ctx, http.MethodGet, "/api/status", nil, &st)
}

// Mappings is GET /api/map.
func (c *Client) Mappings(ctx context.Context) ([]Mapping, error) {
	var ms []Mapping
	return ms, c.Call(ctx, http.MethodGet, "/api/map", nil, &ms)
}

// Map is POST /api/map.
func (c *Client) Map(ctx context.Context, r MapRequest) (Mapping, error) {
	var m Mapping
	return m, c.Call(ctx, http.MethodPost, "/api/map", r, &m)
}

// Unmap is DELETE /api/map.
func (c *Client) Unmap(ctx context.Context, r UnmapRequest) (UnmapResult, error) {
	var res UnmapResult
	return res, c.Call(ctx, http.MethodDelete, "/api/map", r, &res)
}

// Resize is POST /api/lanes/NAME/resize.
func (c *Client) Resize(ctx context.Context, lane string, r ResizeRequest) (ResizeResult, error) {
	var res ResizeResult
	return res, c.Call(ctx, http.MethodPost, "/api/lanes/"+url.PathEscape(lane)+"/resize", r, &res)
}

// Drain is POST /api/lanes/NAME/drain.
func (c *Client) Drain(ctx context.Context, lane string) (DrainResult, error) {
	var res DrainResult
	return res, c.Call(ctx, http.MethodPost, "/api/lanes/"+url.PathEscape(lane)+"/drain", nil, &res)
}

// Reload is POST /api/reload.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	return res, c.Call(ctx, http.MethodPost, "/api/reload", nil, &res)
}

// Requests is GET /api/requests.
func (c *Client) Requests(ctx context.Context) ([]InflightRequest, error) {
	var rs []InflightRequest
	return rs, c.Call(ctx, http.MethodGet, "/api/requests", nil, &rs)
}

// Samples is GET /api/samples?lane=NAME&since=SEQ; an empty lane asks for
// every lane.
func (c *Client) Samples(ctx context.Context, lane string, since uint64) (*Samples, error) {
	q := url.Values{}
	if lane != "" {
		q.Set("lane", lane)
	}
	q.Set("since", strconv.FormatUint(since, 10))
	var s Samples
	return &s, c.Call(ctx, http.MethodGet, "/api/samples?"+q.Encode(), nil, &s)
}

// Events is GET /api/events?since=ID.
func (c *Client) Events(ctx context.Context, since uint64) ([]Event, error) {
	var es []Event
	return es, c.Call(ctx, http.MethodGet, "/api/events?since="+strconv.FormatUint(since, 10), nil, &es)
}

// Metrics is GET /metrics: the Prometheus text exposition, as it came.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return "", err
	}
	raw, err := c.do(req, http.MethodGet, "/metrics")
	return string(raw), err
}
