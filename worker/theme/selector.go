package theme

import (
	"strings"

	"github.com/andybalholm/cascadia"
)

// selInfo is what the streaming pass needs to know about a selector.
//
// A selector is streamable when it only looks at an element and its
// ancestors: type, universal, #id, .class and [attr] selectors joined by
// descendant (" ") and child (">") combinators, in a comma-separated
// group. When the streaming pass meets an element, its ancestors are
// complete (their attributes are all known), so cascadia's own Match gives
// the DOM's answer on a node whose Parent chain is the stack of open
// elements. Pseudo-classes (:nth-child, :empty, :has, :contains...),
// sibling combinators and escapes look at what is not read yet, or are
// not worth the risk: such a selector sends every request to the DOM path.
type selInfo struct {
	ok   bool
	keys []string // attribute names the selector reads
	// last is the group of the rightmost compound selectors ("head link,
	// p.x" gives "link, p.x"): what an element must match by itself
	// whatever its ancestors.
	last string
}

// analyze lexes a selector as described at selInfo. It is conservative:
// anything it does not know makes the selector not streamable.
func analyze(src string) selInfo {
	var info selInfo
	addKey := func(k string) {
		k = strings.ToLower(strings.TrimSpace(k))
		for _, have := range info.keys {
			if have == k {
				return
			}
		}
		info.keys = append(info.keys, k)
	}
	var lasts []string
	groupStart := 0 // start of the current group
	lastStart := 0  // start of the current group's rightmost compound
	inBracket := false
	keyStart := -1 // in a bracket, start of the attribute name
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\\' {
			return selInfo{}
		}
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		if inBracket {
			switch c {
			case '"', '\'':
				quote = c
			case ']', '=', '~', '|', '^', '$', '*', '!', ' ', '\t', '\n', '\r', '\f':
				if keyStart >= 0 {
					if k := src[keyStart:i]; strings.TrimSpace(k) != "" {
						addKey(k)
						keyStart = -1
					}
				}
				if c == ']' {
					inBracket = false
				}
			}
			continue
		}
		switch c {
		case '[':
			inBracket, keyStart = true, i+1
		case ':', '+', '~', '|', '(', ')', '"', '\'', '@':
			return selInfo{}
		case '#':
			addKey("id")
		case '.':
			addKey("class")
		case ',':
			lasts = append(lasts, strings.TrimSpace(src[lastStart:i]))
			groupStart, lastStart = i+1, i+1
		case ' ', '\t', '\n', '\r', '\f', '>':
			// A combinator when something of the group precedes it and
			// something follows.
			if strings.TrimSpace(src[groupStart:i]) != "" && strings.TrimLeft(src[i+1:], " \t\n\r\f>") != "" &&
				!strings.HasPrefix(strings.TrimLeft(src[i+1:], " \t\n\r\f"), ",") {
				lastStart = i + 1
			}
		}
	}
	if inBracket || quote != 0 {
		return selInfo{}
	}
	lasts = append(lasts, strings.TrimSpace(src[lastStart:]))
	for i, l := range lasts {
		l = strings.TrimLeft(l, " \t\n\r\f>")
		if l == "" {
			return selInfo{}
		}
		lasts[i] = l
	}
	info.last = strings.Join(lasts, ", ")
	if _, err := cascadia.Compile(info.last); err != nil {
		return selInfo{}
	}
	info.ok = true
	return info
}
