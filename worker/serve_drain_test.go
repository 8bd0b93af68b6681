package worker

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared"
)

// A drain tells the program: OnDrain is called once, Draining(ctx) turns
// true for the handlers, and Drain returns once the running request ends.
func TestDrainHook(t *testing.T) {
	called := make(chan struct{}, 2)
	release := make(chan struct{})
	var sawDraining bool
	s := &server{log: hclog.NewNullLogger(), idle: make(chan struct{}, 1), drained: make(chan struct{}),
		onDrain: func() { called <- struct{}{} },
		handler: func(ctx *fasthttp.RequestCtx) {
			<-release
			sawDraining = Draining(ctx)
		}}
	var ctx fasthttp.RequestCtx
	done := make(chan struct{})
	go func() { s.serve(&ctx); close(done) }()
	for s.inflight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	drained := make(chan error, 1)
	go func() { drained <- s.Drain(context.Background()) }()
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("OnDrain was not called")
	}
	close(release)
	<-done
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if !sawDraining {
		t.Error("Draining(ctx) was false in a handler that ran on after the drain began")
	}
	_ = s.Drain(context.Background())
	select {
	case <-called:
		t.Error("OnDrain called twice")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestServeByHand(t *testing.T) {
	t.Setenv(shared.Handshake.MagicCookieKey, "")
	if err := Serve(func(*fasthttp.RequestCtx) {}); err != ErrNotStarted {
		t.Fatalf("Serve run by hand: %v, want ErrNotStarted", err)
	}
}
