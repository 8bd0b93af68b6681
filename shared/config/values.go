package config

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// The typed attribute readers below share one contract: they return the
// attribute when it is present (and not null), nil when it is absent, and ok
// only when its value was stored in dst. A present but invalid attribute has
// been reported, dst is untouched, and callers skip checks that depend on it.

// decode evaluates attribute name into dst (a pointer to a Go value gocty
// understands). Variables and functions are not available: the config is
// literal values only.
func (d *decoder) decode(attrs hcl.Attributes, name string, dst any) (*hcl.Attribute, bool) {
	a := attrs[name]
	if a == nil {
		return nil, false
	}
	ok, null := d.value(a.Expr, name, dst)
	if null {
		return nil, false
	}
	return a, ok
}

// value evaluates e, the value of what, into dst, reporting a problem at most
// once (HCL would otherwise add "unknown value" on top of "Variables not
// allowed"). A null value is left to the caller.
func (d *decoder) value(e hcl.Expression, what string, dst any) (ok, null bool) {
	v, diags := e.Value(nil)
	if diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		return false, false
	}
	if v.IsNull() {
		return false, true
	}
	if diags := gohcl.DecodeExpression(e, nil, dst); diags.HasErrors() {
		// HCL's own text names cty types and int64 bounds; say it plainly.
		d.errorf(e.Range(), "Incorrect value type", "%s must be %s.", what, typeName(dst))
		return false, false
	}
	return true, false
}

func typeName(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *bool:
		return "true or false"
	case *int:
		return "a whole number"
	case *[]string:
		return `a list of strings, such as ["a", "b"]`
	}
	return fmt.Sprintf("of type %T", dst)
}

func (d *decoder) str(attrs hcl.Attributes, name string, dst *string) (*hcl.Attribute, bool) {
	return d.decode(attrs, name, dst)
}

func (d *decoder) boolean(attrs hcl.Attributes, name string, dst *bool) (*hcl.Attribute, bool) {
	return d.decode(attrs, name, dst)
}

// integer reads a whole number that must be at least min.
func (d *decoder) integer(attrs hcl.Attributes, name string, dst *int, min int) (*hcl.Attribute, bool) {
	var n int
	a, ok := d.decode(attrs, name, &n)
	if !ok {
		return a, false
	}
	if n < min {
		d.errorf(a.Expr.Range(), "Invalid value", "%s must be %d or more, not %d.", name, min, n)
		return a, false
	}
	*dst = n
	return a, true
}

// duration reads a Go duration string ("30s", "5m", "1h30m"). It must be
// more than zero unless allowZero; it is never negative.
func (d *decoder) duration(attrs hcl.Attributes, name string, dst *time.Duration, allowZero bool) (*hcl.Attribute, bool) {
	var s string
	a, ok := d.decode(attrs, name, &s)
	if !ok {
		return a, false
	}
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.errorf(a.Expr.Range(), "Invalid duration", "%q is not a duration: use Go syntax such as \"30s\" or \"5m\".", s)
		return a, false
	case v < 0:
		d.errorf(a.Expr.Range(), "Invalid duration", "%s must not be negative, not %q.", name, s)
		return a, false
	case v == 0 && !allowZero:
		d.errorf(a.Expr.Range(), "Invalid duration", "%s must be more than 0, not %q.", name, s)
		return a, false
	}
	*dst = v
	return a, true
}

// size reads a byte size (see ParseSize). It must be more than zero unless
// allowZero, in which case "" also means zero.
func (d *decoder) size(attrs hcl.Attributes, name string, dst *int64, allowZero bool) (*hcl.Attribute, bool) {
	var s string
	a, ok := d.decode(attrs, name, &s)
	if !ok {
		return a, false
	}
	if s == "" && allowZero {
		*dst = 0
		return a, true
	}
	n, err := ParseSize(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid size", "%s.", err)
		return a, false
	}
	if n == 0 && !allowZero {
		d.errorf(a.Expr.Range(), "Invalid size", "%s must be more than 0, not %q.", name, s)
		return a, false
	}
	*dst = n
	return a, true
}

// intSize is size for fields held in an int.
func (d *decoder) intSize(attrs hcl.Attributes, name string, dst *int) (*hcl.Attribute, bool) {
	var n int64
	a, ok := d.size(attrs, name, &n, false)
	if !ok {
		return a, false
	}
	if int64(int(n)) != n {
		d.errorf(a.Expr.Range(), "Invalid size", "%s is too large.", name)
		return a, false
	}
	*dst = int(n)
	return a, true
}

// listenAddr reads a "HOST:PORT" listen address.
func (d *decoder) listenAddr(attrs hcl.Attributes, name string, dst *string) (*hcl.Attribute, bool) {
	var s string
	a, ok := d.str(attrs, name, &s)
	if !ok {
		return a, false
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		d.errorf(a.Expr.Range(), "Invalid address", "%q is not a listen address: write \"HOST:PORT\", such as \"127.0.0.1:8080\" or \":8080\".", s)
		return a, false
	}
	*dst = s
	return a, true
}

// strList reads a list of strings and returns the range of each element, so
// that a problem with one element points at that element.
func (d *decoder) strList(attrs hcl.Attributes, name string) (*hcl.Attribute, []string, []hcl.Range, bool) {
	a := attrs[name]
	if a == nil {
		return nil, nil, nil, false
	}
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		// Not a list literal: let HCL say what type is wrong.
		var l []string
		a, ok := d.decode(attrs, name, &l)
		if !ok {
			return a, nil, nil, false
		}
		ranges := make([]hcl.Range, len(l))
		for i := range ranges {
			ranges[i] = a.Expr.Range()
		}
		return a, l, ranges, true
	}
	l := make([]string, 0, len(exprs))
	ranges := make([]hcl.Range, 0, len(exprs))
	ok := true
	for _, e := range exprs {
		var s string
		if eok, null := d.value(e, "each element of "+name, &s); !eok {
			if null {
				d.errorf(e.Range(), "Invalid value", "%s must not contain null.", name)
			}
			ok = false
			continue
		}
		l = append(l, s)
		ranges = append(ranges, e.Range())
	}
	return a, l, ranges, ok
}

func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}
