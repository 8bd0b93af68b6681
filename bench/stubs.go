package main

import (
	"context"
	"io"
)

func (b *bench) accessLog(ctx context.Context) (func(io.Writer), error)   { return nil, nil }
func (b *bench) breakdown(ctx context.Context) (func(io.Writer), error)   { return nil, nil }
