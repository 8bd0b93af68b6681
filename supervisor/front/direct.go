package front

import (
	"bytes"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/lanes-dev/lanes/shared/upstream"
)

// In direct mode (app.direct) the front is the proxy: a request goes from
// its lane's slot straight to the upstream, and what the built-in
// worker's proxy would do to it on the way is done here. prepare has done
// the part both hops share (hop-by-hop and Connection-named fields, one
// X-Forwarded-For, X-Forwarded-Proto and -Host, the target in origin form,
// upgrades refused); toUpstream adds the rest, and fromUpstream filters
// the answer as the worker's proxy does (package upstream).

var (
	strHTTP11  = []byte("HTTP/1.1")
	strHTTPS   = []byte("https")
	strHTTP10s = "HTTP/1.0"
)

// toUpstream readies req for the upstream: header names with "_" dropped
// (unless underscores_in_headers, as nginx does), the hop-by-hop fields
// prepare leaves to the worker's proxy (Proxy-Authorization), the scheme the
// upstream's client expects, and HTTP/1.1 on this hop whatever the client
// spoke. It returns whether the client spoke HTTP/1.0: fromUpstreamDone
// must then restore it before serve returns (the front server reads it to
// frame the client's response).
func toUpstream(req *fasthttp.Request, underscores, tls bool) (http10 bool) {
	h := &req.Header
	for b := h.RawHeaders(); len(b) > 0; {
		var k []byte
		k, _, b = nextField(b)
		switch {
		case k == nil:
		case !underscores && bytes.IndexByte(k, '_') >= 0,
			// The worker's proxy drops these too (Proxy-Authorization, a
			// credential for this hop); the framing the front has set.
			upstream.IsHopByHop(k, nil) && !bytes.EqualFold(k, strTransferEnc):
			delHeader(h, k)
		}
	}
	if tls {
		req.URI().SetSchemeBytes(strHTTPS)
	}
	if !h.IsHTTP11() {
		h.SetProtocolBytes(strHTTP11)
		return true
	}
	return false
}

// fromUpstreamDone undoes what toUpstream changed of the client's request.
func fromUpstreamDone(req *fasthttp.Request, http10 bool) {
	if http10 {
		req.Header.SetProtocol(strHTTP10s)
	}
}

// fromUpstream copies the upstream's status and end-to-end header fields
// to dst (upstream.CopyHeader: no hop-by-hop ones, no framing, no
// X-Lanes-*). A response without a body (HEAD, 204, 304) announces the
// length the upstream announced.
func fromUpstream(dst *fasthttp.ResponseHeader, resp *fasthttp.Response) {
	dst.SetStatusCode(resp.StatusCode())
	if msg := resp.Header.StatusMessage(); len(msg) > 0 {
		dst.SetStatusMessage(msg)
	}
	var tb [8][]byte
	upstream.CopyHeader(dst, &resp.Header, tb[:0])
	if n := resp.Header.ContentLength(); resp.BodyStream() == nil && n >= -1 {
		dst.SetContentLength(n)
	}
}

// failDirect answers a direct request whose upstream gave no response,
// as the worker's proxy would: 502 with what went wrong.
func failDirect(ctx *fasthttp.RequestCtx, err error) {
	status, what := upstream.Classify(err)
	ctx.Error(fmt.Sprintf("%d %s: %s\n", status, fasthttp.StatusMessage(status), what), status)
}
