package shared

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Errors of the theme service as its clients see them.
var (
	// ErrFetchdGone is what every call returns while fetchd cannot be
	// reached (not started, restarting, stopped). A worker keeps serving the
	// last theme it got.
	ErrFetchdGone = errors.New("lanes: fetchd gone")
	// ErrUnknownTheme is the answer for a theme name fetchd was not
	// configured with.
	ErrUnknownTheme = errors.New("lanes: unknown theme")
)

// ThemeService is described by hand like Control (no protoc): requests and
// answers are wrapper messages carrying JSON. Theme's answer carries the
// HTML raw after the JSON header, so a 50 KB page is not base64-inflated:
// uvarint(len(header)) | header JSON | HTML.
const themeServiceName = "lanes.ThemeService"

type themeHandler interface {
	theme(ctx context.Context, req *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
	status(ctx context.Context) (*wrapperspb.BytesValue, error)
}

var themeServiceDesc = grpc.ServiceDesc{
	ServiceName: themeServiceName,
	HandlerType: (*themeHandler)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Theme", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(themeHandler).theme(ctx, in)
		}},
		{MethodName: "Status", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			return srv.(themeHandler).status(ctx)
		}},
	},
}

// themeRequest is Theme's request on the wire.
type themeRequest struct {
	Name string `json:"name"`
	Have string `json:"have,omitempty"`
}

// RegisterThemeService serves impl (fetchd) on s.
func RegisterThemeService(s *grpc.Server, impl FetchdService) {
	s.RegisterService(&themeServiceDesc, &themeServer{impl: impl})
}

type themeServer struct{ impl FetchdService }

func (s *themeServer) theme(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	var req themeRequest
	if err := json.Unmarshal(in.GetValue(), &req); err != nil {
		return nil, status.Error(codes.InvalidArgument, "theme: decode request: "+err.Error())
	}
	doc, err := s.impl.Theme(ctx, req.Name, req.Have)
	if err != nil {
		return nil, serverError(err)
	}
	html := doc.HTML
	doc.HTML = nil
	hdr, err := json.Marshal(doc)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := make([]byte, 0, binary.MaxVarintLen64+len(hdr)+len(html))
	out = binary.AppendUvarint(out, uint64(len(hdr)))
	out = append(out, hdr...)
	out = append(out, html...)
	return wrapperspb.Bytes(out), nil
}

func (s *themeServer) status(ctx context.Context) (*wrapperspb.BytesValue, error) {
	st, err := s.impl.Status(ctx)
	if err != nil {
		return nil, serverError(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return wrapperspb.Bytes(b), nil
}

func serverError(err error) error {
	switch {
	case errors.Is(err, ErrUnknownTheme):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// DialThemeService returns a client of the fetchd serving on the unix
// socket path socket, and the function that closes it. It does not wait for
// fetchd: the connection is made on the first call and remade after fetchd
// restarts (retried within a second, not gRPC's default two minutes), and a
// call while fetchd is away fails at once with ErrFetchdGone.
func DialThemeService(socket string) (FetchdService, func(), error) {
	cc, err := grpc.NewClient("passthrough:///fetchd",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: time.Second,
		}),
		// HTML answers are a few hundred KB at most; fetchd bounds bodies
		// at 4 MiB, so allow that plus the header.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(5<<20)),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("fetchd client %s: %w", socket, err)
	}
	return &themeClient{cc: cc}, func() { _ = cc.Close() }, nil
}

type themeClient struct{ cc *grpc.ClientConn }

// Theme implements ThemeService.
func (c *themeClient) Theme(ctx context.Context, name, have string) (ThemeDoc, error) {
	req, err := json.Marshal(themeRequest{Name: name, Have: have})
	if err != nil {
		return ThemeDoc{}, err
	}
	out := new(wrapperspb.BytesValue)
	if err := c.cc.Invoke(ctx, "/"+themeServiceName+"/Theme", wrapperspb.Bytes(req), out); err != nil {
		return ThemeDoc{}, themeRPCError("theme "+name, err)
	}
	b := out.GetValue()
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return ThemeDoc{}, fmt.Errorf("theme %s: malformed answer", name)
	}
	var doc ThemeDoc
	if err := json.Unmarshal(b[k:k+int(n)], &doc); err != nil {
		return ThemeDoc{}, fmt.Errorf("theme %s: decode: %w", name, err)
	}
	if html := b[k+int(n):]; len(html) > 0 {
		doc.HTML = html
	}
	return doc, nil
}

// Status implements StatusService.
func (c *themeClient) Status(ctx context.Context) (FetchdStatus, error) {
	out := new(wrapperspb.BytesValue)
	if err := c.cc.Invoke(ctx, "/"+themeServiceName+"/Status", &emptypb.Empty{}, out); err != nil {
		return FetchdStatus{}, themeRPCError("fetchd status", err)
	}
	var st FetchdStatus
	if err := json.Unmarshal(out.GetValue(), &st); err != nil {
		return FetchdStatus{}, fmt.Errorf("fetchd status: decode: %w", err)
	}
	return st, nil
}

// themeRPCError turns a dead fetchd into ErrFetchdGone, an unknown name into
// ErrUnknownTheme, and keeps deadlines recognisable.
func themeRPCError(op string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return fmt.Errorf("%s: %w", op, ErrFetchdGone)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", op, context.DeadlineExceeded)
	case codes.NotFound:
		return fmt.Errorf("%s: %w", op, ErrUnknownTheme)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Interface guards.
var _ FetchdService = (*themeClient)(nil)
