package themepage

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// ToUTF8 returns page as UTF-8, decoded from the charset its byte order
// mark, contentType's charset parameter or a <meta> in its first 1,024
// bytes declares (the HTML standard's order), and the charset's name. A
// page that declares nothing is taken as UTF-8 and returned as it is, as
// before charsets were read: guessing windows-1252 for it would garble
// pages that are UTF-8 with a stray byte. The HTML parser assumes UTF-8,
// so a Shift_JIS theme parsed as it came would come out garbled.
func ToUTF8(page []byte, contentType string) ([]byte, string, error) {
	e, name, certain := charset.DetermineEncoding(page, contentType)
	if !certain && !declaresCharset(page) {
		return page, "utf-8", nil // nothing declared: the fallback guess
	}
	if name == "utf-8" {
		return bytes.TrimPrefix(page, utf8BOM), name, nil
	}
	out, err := e.NewDecoder().Bytes(page)
	if err != nil {
		return nil, name, fmt.Errorf("decode %s: %w", name, err)
	}
	return out, name, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// declaresCharset reports whether a <meta> could have declared the
// charset: the prescan only looks at the first 1,024 bytes, and only a
// "charset" in them declares one.
func declaresCharset(page []byte) bool {
	return bytes.Contains(bytes.ToLower(page[:min(len(page), 1024)]), []byte("charset"))
}

// SetMetaUTF8 makes the charset declarations of a parsed page (<meta
// charset> and <meta http-equiv=content-type>) say utf-8, which the page
// is once parsed and rendered again, and reports whether it changed any.
func SetMetaUTF8(root *html.Node) bool {
	changed := false
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.DataAtom == atom.Meta {
			httpEquiv := false
			for _, a := range n.Attr {
				if a.Namespace == "" && strings.EqualFold(a.Key, "http-equiv") && strings.EqualFold(a.Val, "content-type") {
					httpEquiv = true
				}
			}
			for i, a := range n.Attr {
				switch {
				case a.Namespace != "":
				case strings.EqualFold(a.Key, "charset") && !strings.EqualFold(a.Val, "utf-8"):
					n.Attr[i].Val = "utf-8"
					changed = true
				case httpEquiv && strings.EqualFold(a.Key, "content") && !strings.EqualFold(a.Val, "text/html; charset=utf-8"):
					n.Attr[i].Val = "text/html; charset=utf-8"
					changed = true
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	return changed
}
