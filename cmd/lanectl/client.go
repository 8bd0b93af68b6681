package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lanes-dev/lanes/shared/api"
)

// client is lanectl's view of the admin API: api.Client, plus -json (the
// answer printed as it came) and the hints an operator needs when a call
// fails.
type client struct {
	api  *api.Client
	json bool      // print answers raw
	out  io.Writer // stdout
}

// call sends in (if not nil) as JSON and decodes a 2xx answer into out; with
// -json the answer is printed as it came too.
func (c *client) call(method, path string, in, out any) error {
	c.api.Raw = nil
	if c.json {
		c.api.Raw = c.out
	}
	err := c.api.Call(context.Background(), method, path, in, out)
	var se *api.ServerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		if se.Code == http.StatusUnauthorized && c.api.Token == "" && se.Body.Error != "" {
			se.Body.Error += "; give -token, -token-file or $LANES_TOKEN"
		}
		return se
	default:
		return fmt.Errorf("%w (is lanesd running? -admin or $LANES_ADMIN)", err)
	}
}
