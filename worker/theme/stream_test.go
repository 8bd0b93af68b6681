package theme

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lanes-dev/lanes/shared"
	"github.com/lanes-dev/lanes/shared/config"
)

// diffPages are content pages for the differential tests: the ones the
// streaming pass should follow, and the ones where the HTML parser
// rearranges the tree and it must step aside.
var diffPages = []string{
	testContent,
	`<li class="row">new row</li>`,
	`<!DOCTYPE html><html lang="en"><head><title>A &amp; B &lt;'q'&gt;</title>
	<meta charset="utf-8"><link rel="stylesheet" href="/a.css?x=1&amp;y=2"><style>p > a { content: "&amp;" }</style>
	<!-- head comment --></head>
<body class="x"><div id="content"><h1 title='say "hi"'>T</h1>
<pre>
first line kept</pre><pre>

two newlines</pre><textarea name="t">
text &amp; area</textarea>
<table><thead><tr><th>a</th></tr></thead>
<tbody><tr><td>1</td><td><b>bold</b> <i>it</i></td></tr></tbody></table>
<ul><li>one<ul><li>nested</li></ul></li><li>two</li></ul>
<p>a<br>b<img src="x.png" alt="x"><input type=checkbox checked></p>
<!-- a comment > with -> arrows --><!---->
<script>if (a < b && c) { document.write("</p>") }</script>
<noscript><p>no js</p></noscript>
<div class="ad">buy</div><DIV CLASS="Ad" Id=up>UPPER</DIV><div/>self closing div</div>
<span data-x="1" data-x="2">dup</span>&nbsp;&copy; &#x27; caf&eacute;
</div></body></html>
`,
	// Implied html, head and body.
	`<title>implied</title><link rel=stylesheet href=/i.css><div id=content><p>implied body</p></div>`,
	`<html><head><title>t</title></head>  <body><div id="content">x</div></body>
</html>
`,
	// Text, elements and comments after </body>.
	`<html><body><div id="content">in</div></body><!-- after --> <p>late</p></html> <!--x--> tail`,
	// Unclosed at EOF.
	`<html><body><div id="content"><p>open <b>bold`,
	`<html><body><div id="content"><table><tr><td>no tbody</td></tr></table></div></body></html>`,
	`<html><body><div id="content"><table class=t><tr><td>a</td></tr><tr><th>b</th></tr></table><table><thead><tr><td>h</td></tr></thead></table></div></body></html>`,
	`<html><body><div id="content"><table><tbody><tr><td>x</td></tr></tbody><tr><td>y</td></tr></table></div></body></html>`,
	`<html><body><div id="content"><table><tr><td>open row</table></div></body></html>`,
	`<html><body><div id="content"><p>para<div>closes p</div></p></div></body></html>`,
	`<html><body><div id="content"><ul><li>a<li>b</ul></div></body></html>`,
	`<html><body><div id="content"><b><i>misnested</b></i></div></body></html>`,
	`<html><body><div id="content"><svg viewBox="0 0 1 1"><title>svg</title><path d="M0 0"/></svg></div></body></html>`,
	`<html><body><div id="content"><table>fostered<tr><td>x</td></tr></table></div></body></html>`,
	`<html><body><div id="content"><select><option>a<option>b</select></div></body></html>`,
	`<html><body><div id="content"><a href="/1">one<a href="/2">two</a></div></body></html>`,
	`<html><head><title>t</title><body><div id="content">no /head</div></body></html>`,
	`<html><body><div id="content"><h1>a<h2>b</h2></h1></div></body></html>`,
	`<html><body><div id="content"><p>x</p></p></div></body></html>`,
	`<html><body><div id="content"><form><form></form></form><button><button></button></div></body></html>`,
	`<html><body><div id="content"><dl><dt>a</dt><dd>b</dd></dl><listing>
l</listing><xmp>a<b></xmp><iframe><p>raw</iframe></div></body></html>`,
	`<body><div id="content">` + strings.Repeat("<div>", 520) + `</div></body>`,
	`<html><head><style>a{}</style><title>x</title></head><body><div id=content><footer>content footer</footer><p class=x>x</p><title>body title</title></div></body></html>`,
	`plain text, no tags at all`,
	``,
}

// diffRules are rule sets for the differential tests.
var diffRules = map[string][]config.ThemeRule{
	"design":           testRules,
	"replace":          {{Kind: "replace", Theme: "#content", Content: "#content"}},
	"append outermost": {{Kind: "append", Theme: "footer", Content: "#content, #content p"}},
	"drops": {
		{Kind: "drop", Content: ".ad, script"},
		{Kind: "replace", Theme: "#content", Content: "#content"},
		{Kind: "append", Theme: "head", Content: "head link, head style, head title"},
		{Kind: "title"},
	},
	"append then replace": {
		{Kind: "append", Theme: "#content", Content: "p"},
		{Kind: "replace", Theme: "#content", Content: "#content"},
		{Kind: "append", Theme: "#content", Content: "#content"},
	},
	"theme selector that content may match": {
		{Kind: "replace", Theme: "#content", Content: "#content"},
		{Kind: "append", Theme: "footer", Content: ".x"},
	},
	"body":           {{Kind: "replace", Theme: "main", Content: "body"}, {Kind: "append", Theme: "head", Content: "head"}},
	"attributes":     {{Kind: "replace", Theme: "#content", Content: `div[id="content"] > *`}, {Kind: "append", Theme: "footer", Content: "[data-x], .Ad"}},
	"not streamable": {{Kind: "replace", Theme: "#content", Content: "#content > p:first-child"}},
	"theme selector not streamable": {
		{Kind: "append", Theme: "header", Content: "p"},
		{Kind: "replace", Theme: "body > :empty, #content", Content: "#content"},
	},
}

var diffThemes = map[string]string{
	"test":     testTheme,
	"no title": strings.Replace(testTheme, "<title>Theme title</title>", "", 1),
}

// both themes content with each path over the filter's current theme.
func both(t testing.TB, f *Filter, content string) (dom, stream []byte, domErr, streamErr error) {
	t.Helper()
	th := f.cur.Load()
	if th == nil {
		t.Fatal("no theme")
	}
	var a, b buffer
	domErr = f.render(&a, th, []byte(content))
	streamErr = f.renderStream(&b, th, []byte(content))
	return a.B, b.B, domErr, streamErr
}

// The streaming pass gives the DOM path's page, byte for byte, wherever
// it does not step aside; and it follows the ordinary pages.
func TestStreamMatchesDOM(t *testing.T) {
	streamed := map[string]int{}
	for tn, theme := range diffThemes {
		for rn, rules := range diffRules {
			f, fd := newFilter(t, rules, Options{})
			fd.set("v1", shared.ThemeFresh, theme)
			f.Warm(context.Background())
			for i, page := range append(diffPages, page50K()) {
				dom, stream, derr, serr := both(t, f, page)
				if errors.Is(serr, errFallback) {
					continue
				}
				streamed[rn]++
				if (derr == nil) != (serr == nil) || (derr != nil && !errors.Is(serr, derr)) {
					t.Errorf("%s/%s page %d: DOM error %v, streaming error %v", tn, rn, i, derr, serr)
					continue
				}
				if !bytes.Equal(dom, stream) {
					t.Errorf("%s/%s page %d differs:\nDOM:    %q\nstream: %q", tn, rn, i, dom, stream)
				}
			}
		}
	}
	// Pages 0-6 are ordinary: every rule set that can stream must.
	for rn := range diffRules {
		if rn == "not streamable" || rn == "theme selector not streamable" {
			if streamed[rn] != 0 {
				t.Errorf("%s: %d pages streamed", rn, streamed[rn])
			}
			continue
		}
		if streamed[rn] < 2*7 {
			t.Errorf("%s: only %d pages of %d streamed", rn, streamed[rn], 2*(len(diffPages)+1))
		}
	}
}

// Apply takes the streaming pass on the design's rules, and the DOM path,
// counted, where it must.
func TestApplyStreamsAndCountsFallbacks(t *testing.T) {
	f, _ := newFilter(t, testRules, Options{})
	for _, page := range []string{testContent, page50K()} {
		r := htmlResp(page)
		if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
			t.Fatalf("state %q", res.State)
		}
	}
	if n := f.Fallbacks(); n != 0 {
		t.Errorf("%d fallbacks on ordinary pages", n)
	}
	r := htmlResp(`<html><body><div id="content"><p>a<div>b</div></div></body></html>`)
	if res := f.Apply(context.Background(), false, r); res.State != shared.ThemeFresh {
		t.Fatalf("state %q", res.State)
	}
	contains(t, string(r.Body()), `<main id="content"><p>a</p><div>b</div></main>`)
	if n := f.Fallbacks(); n != 1 {
		t.Errorf("%d fallbacks, want 1", n)
	}
	g, _ := newFilter(t, diffRules["not streamable"], Options{})
	g.Apply(context.Background(), false, htmlResp(testContent))
	if n := g.Fallbacks(); n != 1 {
		t.Errorf("not streamable selector: %d fallbacks, want 1", n)
	}
}

func TestAnalyzeSelector(t *testing.T) {
	for _, tc := range []struct {
		sel, last string
		ok        bool
	}{
		{"#content", "#content", true},
		{"head link, head style", "link, style", true},
		{"div > p.x", "p.x", true},
		{`a[href^="http://x"] , [data-y~=z]`, `a[href^="http://x"], [data-y~=z]`, true},
		{"p:first-child", "", false},
		{"h1 + p", "", false},
		{"h1 ~ p", "", false},
		{`p\:x`, "", false},
		{"li:nth-child(2)", "", false},
	} {
		got := analyze(tc.sel)
		if got.ok != tc.ok || got.last != tc.last {
			t.Errorf("%q: ok %v last %q, want %v %q", tc.sel, got.ok, got.last, tc.ok, tc.last)
		}
	}
	if k := analyze(`div#a.b[data-x="1"] [lang|=en]`).keys; strings.Join(k, " ") != "id class data-x lang" {
		t.Errorf("keys %q", k)
	}
}

// FuzzStreamMatchesDOM: wherever the streaming pass does not step aside,
// its page is the DOM path's.
func FuzzStreamMatchesDOM(f *testing.F) {
	for _, p := range diffPages {
		f.Add(p)
	}
	// "body" renders all of head and body; "drops" takes parts.
	var filters []*Filter
	for _, rn := range []string{"drops", "body", "append then replace"} {
		fl, _ := newFilter(f, diffRules[rn], Options{})
		fl.Warm(context.Background())
		filters = append(filters, fl)
	}
	f.Fuzz(func(t *testing.T, page string) {
		for _, fl := range filters {
			dom, stream, derr, serr := both(t, fl, page)
			if errors.Is(serr, errFallback) {
				continue
			}
			if (derr == nil) != (serr == nil) {
				t.Fatalf("DOM error %v, streaming error %v", derr, serr)
			}
			if !bytes.Equal(dom, stream) {
				t.Fatalf("differs:\nDOM:    %q\nstream: %q", dom, stream)
			}
		}
	})
}
