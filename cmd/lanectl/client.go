package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/lanes-dev/lanes/shared/api"
)

// client calls the admin API.
type client struct {
	base, token string
	http        *http.Client
	json        bool      // print answers raw
	out         io.Writer // stdout
}

// serverError is lanesd's refusal: its status and {"error", "diagnostics"}.
type serverError struct {
	status string
	body   api.ErrorBody
}

func (e *serverError) Error() string {
	if e.body.Error == "" {
		return "lanesd answered " + e.status
	}
	return e.body.Error + " (" + e.status + ")"
}

// call sends in (if not nil) as JSON and decodes a 2xx answer into out; with
// -json the answer is printed as it came instead.
func (c *client) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the lanes admin API at %s (is lanesd running? -admin or $LANES_ADMIN): %w", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		se := &serverError{status: resp.Status}
		if json.Unmarshal(raw, &se.body) != nil {
			se.body = api.ErrorBody{}
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" && se.body.Error != "" {
			se.body.Error += "; give -token, -token-file or $LANES_TOKEN"
		}
		return se
	}
	if c.json {
		_, err := c.out.Write(raw)
		if err == nil && !bytes.HasSuffix(raw, []byte("\n")) {
			_, err = io.WriteString(c.out, "\n")
		}
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// unwrapURLError drops url.Error's "Get \"http://...\":" prefix, which the
// message already says.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
