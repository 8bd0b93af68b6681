package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lanes-dev/lanes/shared/api"
)

// maxBody caps a request body; every admin document is tiny.
const maxBody = 64 << 10

// decodeBody reads r's body as exactly one JSON value into v, refusing
// unknown fields, trailing data and bodies over maxBody. On failure it has
// answered 400 and returns false; the Backend is then not called.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("request body larger than %d KiB", maxBody>>10))
		} else {
			writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		}
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(w, http.StatusBadRequest, "request body required: a JSON object")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid JSON body: data after the JSON object")
		return false
	}
	return true
}

// missing names the required fields that are empty, given as name, value
// pairs; "" when none is.
func missing(pairs ...string) string {
	var names []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			names = append(names, pairs[i])
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "missing required field(s): " + strings.Join(names, ", ")
}

// writeError is the one error shape of the admin API.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.ErrorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	// Served as application/json with nosniff, so "<" need not become
	// \u003c: a reader with curl sees the patterns as they are.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error": "encoding the answer failed"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}
