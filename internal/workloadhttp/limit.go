package workloadhttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrResponseTooLarge is returned by a body read past the cap, and by a round trip whose Content-Length
// is already over it. The error returned names the cap; errors.Is(err, ErrResponseTooLarge) holds for it.
var ErrResponseTooLarge = errors.New("the workload API server's response was too large")

// DefaultMaxResponseBytes is the cap for the controller's calls: /version, ServiceAccounts, tokens and
// RBAC objects are a few kB.
const DefaultMaxResponseBytes = 4 << 20

// tooLargeError is ErrResponseTooLarge with the cap in its message.
type tooLargeError struct{ max int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s (over %s)", ErrResponseTooLarge, size(e.max))
}

func (e *tooLargeError) Is(target error) bool { return target == ErrResponseTooLarge }

func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// LimitResponses wraps a RoundTripper so every response body errors with ErrResponseTooLarge once more
// than maxBytes bytes are read, and a response whose Content-Length is over it is refused before its body
// is read. The cap counts the bytes the client reads, after Go's transport decompresses gzip, so a
// compressed bomb is cut at the cap too. It holds for a whole body: a watch is cut after maxBytes as
// well. A maxBytes below 0 counts as 0.
func LimitResponses(rt http.RoundTripper, maxBytes int64) http.RoundTripper {
	return &limitedTransport{rt: rt, max: max(maxBytes, 0)}
}

type limitedTransport struct {
	rt  http.RoundTripper
	max int64
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	// A HEAD response has a Content-Length and no body.
	if resp.ContentLength > t.max && req.Method != http.MethodHead {
		resp.Body.Close()
		return nil, &tooLargeError{max: t.max}
	}
	resp.Body = &limitedBody{body: resp.Body, remaining: t.max, max: t.max}
	return resp, nil
}

// CloseIdleConnections passes the call on, so callers that close the transport's idle connections
// (registrar's connection.close) still reach the transport underneath.
func (t *limitedTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// limitedBody reads at most remaining more bytes, then fails, and keeps failing: client-go drains a
// body before closing it, and that read must not go past the cap either.
type limitedBody struct {
	body      io.ReadCloser
	remaining int64
	max       int64
	err       error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// One byte past what remains tells a body of exactly max bytes from a longer one.
	if next := b.remaining + 1; next > 0 && int64(len(p)) > next {
		p = p[:next]
	}
	n, err := b.body.Read(p)
	if int64(n) > b.remaining {
		n, b.remaining, b.err = int(b.remaining), 0, &tooLargeError{max: b.max}
		return n, b.err
	}
	b.remaining -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.body.Close() }
