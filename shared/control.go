package shared

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ErrWorkerGone is what every control call returns once the worker process
// is unreachable: RPC errors from a dead process become this one error.
var ErrWorkerGone = errors.New("lanes: worker gone")

// Control is the control plane of one worker process. Every call takes a
// context and must honour its deadline: a wedged worker must not wedge the
// supervisor (go-plugin's own Ping has no deadline).
type Control interface {
	// Health reports the worker's state; an error means unhealthy.
	Health(ctx context.Context) (WorkerStats, error)
	// Drain waits until the worker has finished the requests it is
	// running, and marks it draining in its stats. The supervisor calls it
	// on a worker it has already taken out of rotation, so no new request
	// arrives meanwhile. It returns when the worker is idle or ctx ends.
	Drain(ctx context.Context) error
}

// WorkerStats is what a worker reports about itself.
type WorkerStats struct {
	PID        int    `json:"pid"`
	Inflight   int64  `json:"inflight"`
	Served     uint64 `json:"served"`
	RSS        int64  `json:"rss"` // bytes
	Goroutines int    `json:"goroutines"`
	Draining   bool   `json:"draining"`
	Allocs     uint64 `json:"allocs"` // heap objects allocated since the worker started
}

// ControlPlugin is the go-plugin glue for Control over gRPC.
type ControlPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Control // set on the worker side only
}

// GRPCServer registers the worker's Control implementation.
func (p *ControlPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&controlServiceDesc, &controlServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Control that calls the worker.
func (p *ControlPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &controlClient{cc: c}, nil
}

// The service is described by hand with well-known wrapper messages, so no
// protoc step is needed: Health returns WorkerStats as JSON bytes.
const controlServiceName = "lanes.Control"

type controlHandler interface {
	health(ctx context.Context) (*wrapperspb.BytesValue, error)
	drain(ctx context.Context) (*emptypb.Empty, error)
}

var controlServiceDesc = grpc.ServiceDesc{
	ServiceName: controlServiceName,
	HandlerType: (*controlHandler)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Health", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			return srv.(controlHandler).health(ctx)
		}},
		{MethodName: "Drain", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			return srv.(controlHandler).drain(ctx)
		}},
	},
}

type controlServer struct{ impl Control }

func (s *controlServer) health(ctx context.Context) (*wrapperspb.BytesValue, error) {
	st, err := s.impl.Health(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return wrapperspb.Bytes(b), nil
}

func (s *controlServer) drain(ctx context.Context) (*emptypb.Empty, error) {
	if err := s.impl.Drain(ctx); err != nil {
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	}
	return &emptypb.Empty{}, nil
}

type controlClient struct{ cc *grpc.ClientConn }

func (c *controlClient) Health(ctx context.Context) (WorkerStats, error) {
	out := new(wrapperspb.BytesValue)
	if err := c.cc.Invoke(ctx, "/"+controlServiceName+"/Health", &emptypb.Empty{}, out); err != nil {
		return WorkerStats{}, rpcError("health", err)
	}
	var st WorkerStats
	if err := json.Unmarshal(out.GetValue(), &st); err != nil {
		return WorkerStats{}, fmt.Errorf("health: decode: %w", err)
	}
	return st, nil
}

func (c *controlClient) Drain(ctx context.Context) error {
	if err := c.cc.Invoke(ctx, "/"+controlServiceName+"/Drain", &emptypb.Empty{}, new(emptypb.Empty)); err != nil {
		return rpcError("drain", err)
	}
	return nil
}

// rpcError turns transport failures of a dead worker into ErrWorkerGone and
// keeps deadline errors recognisable as context.DeadlineExceeded.
func rpcError(op string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return fmt.Errorf("%s: %w", op, ErrWorkerGone)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Interface guards.
var (
	_ plugin.GRPCPlugin = (*ControlPlugin)(nil)
	_ Control           = (*controlClient)(nil)
)
