package themepage

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/text/encoding/japanese"
)

// bigPage is the adversarial round's theme: 400,000 elements in ~3.2 MB,
// under the 4 MiB size cap.
func bigPage() []byte {
	var b bytes.Buffer
	b.WriteString("<!doctype html><html><head><title>t</title></head><body><main id=content></main>")
	for range 400_000 {
		b.WriteString("<i>x</i>")
	}
	b.WriteString("</body></html>")
	return b.Bytes()
}

func manyAttrs(n int) string {
	var b strings.Builder
	b.WriteString("<a")
	for i := range n {
		fmt.Fprintf(&b, " a%d", i)
	}
	return b.String() + ">"
}

func TestScan(t *testing.T) {
	deep := strings.Repeat("<div>", 300) + strings.Repeat("</div>", 300)
	shallow := strings.Repeat("<div>", 200) + strings.Repeat("</div>", 200)
	for _, tc := range []struct {
		name string
		page string
		ok   bool
	}{
		{"normal", "<!doctype html><html><head><title>t</title><meta charset=utf-8></head><body><main id=content><p>hi<br><img src=x></main></body></html>", true},
		{"400k elements", string(bigPage()), false},
		{"nested past the depth", deep, false},
		{"nested within the depth", shallow, true},
		{"unclosed paragraphs are siblings", strings.Repeat("<p>para", 5000), true},
		{"unclosed list items are siblings", "<ul>" + strings.Repeat("<li>item", 5000) + "</ul>", true},
		{"void elements open nothing", strings.Repeat("<br><img src=a><input>", 3000), true},
		{"a missed end tag closes what it contains", strings.Repeat("<section><div><span>x</section>", 2000), true},
		{"custom elements", strings.Repeat("<x-a><x-b>y</x-b></x-a>", 2000), true},
		{"custom elements left open", strings.Repeat("<x-a>", 300), false},
		{"one element with 200,000 attributes", manyAttrs(200_000), false},
		{"comments count", strings.Repeat("<!---->", 30_000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Scan([]byte(tc.page), Default)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
		})
	}
}

// Scan is cheap: it stops at the first limit passed, and allocates little
// whatever the page (the point is not to build what the page describes).
func TestScanIsCheap(t *testing.T) {
	page := bigPage()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Scan(page, Default)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("Scan of a 400k-element page allocated %d bytes", n)
	}
	t.Logf("Scan of a %d-byte page of 400k elements: %d bytes allocated", len(page), after.TotalAlloc-before.TotalAlloc)
}

func TestToUTF8(t *testing.T) {
	sjis, err := japanese.ShiftJIS.NewEncoder().String("<html><head><meta charset=\"Shift_JIS\"><title>日本語</title></head><body>テーマ</body></html>")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ct string
		page     []byte
		want     string
	}{
		{"meta", "text/html", []byte(sjis), "テーマ"},
		{"header", "text/html; charset=shift_jis", []byte(strings.Replace(sjis, "Shift_JIS", "x", 1)), "テーマ"},
		{"latin1 header", "text/html; charset=iso-8859-1", []byte("<p>caf\xe9</p>"), "café"},
		{"undeclared stays as it came", "text/html", []byte("<p>caf\xe9</p>"), "caf\xe9"},
		{"utf-8", "text/html; charset=utf-8", []byte("<p>café</p>"), "café"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := ToUTF8(tc.page, tc.ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte(tc.want)) {
				t.Errorf("got %q, want it to contain %q", out, tc.want)
			}
		})
	}
}

func TestSetMetaUTF8(t *testing.T) {
	root, err := html.Parse(strings.NewReader(`<html><head><meta charset="Shift_JIS"><meta http-equiv="Content-Type" content="text/html; charset=shift_jis"></head><body></body></html>`))
	if err != nil {
		t.Fatal(err)
	}
	if !SetMetaUTF8(root) {
		t.Fatal("nothing changed")
	}
	var b bytes.Buffer
	_ = html.Render(&b, root)
	if s := b.String(); strings.Contains(strings.ToLower(s), "shift_jis") || !strings.Contains(s, `charset="utf-8"`) {
		t.Errorf("rendered %s", s)
	}
}
