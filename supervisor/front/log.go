package front

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lanes-dev/lanes/shared/logging"
)

// frontLogger is the front server's fasthttp.Logger. fasthttp logs a
// request it cannot parse with a copy of its raw buffer, Authorization and
// Cookie included: that copy is cut off, what fasthttp quotes of the
// request is blanked, the rest escaped, and the whole rate-limited, since
// any client can provoke it on every connection.
type frontLogger struct{ lim *logging.Limiter }

var quotedPart = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func newFrontLogger(log hclog.Logger) frontLogger {
	return frontLogger{lim: logging.NewLimiter(log, time.Second)}
}

func (f frontLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if i := strings.Index(msg, ", contents: "); i >= 0 {
		msg = msg[:i]
	}
	if i := strings.Index(msg, "\ncontents"); i >= 0 {
		msg = msg[:i]
	}
	msg = quotedPart.ReplaceAllString(msg, `"..."`)
	f.lim.Log(hclog.Warn, format, "fasthttp: "+logging.Escape(msg, 500))
}
