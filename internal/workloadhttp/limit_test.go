package workloadhttp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// fakeBody is a response body of n bytes that records its reads and Close.
type fakeBody struct {
	r      io.Reader
	read   int64
	closed bool
}

func newFakeBody(n int64) *fakeBody {
	return &fakeBody{r: io.LimitReader(zeros{}, n)}
}

func (b *fakeBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

func (b *fakeBody) Close() error { b.closed = true; return nil }

// zeros is an endless reader.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// fixedTransport answers every request with body and contentLength.
type fixedTransport struct {
	body          *fakeBody
	contentLength int64
}

func (t *fixedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: t.body, ContentLength: t.contentLength, Request: req}, nil
}

func get(t *testing.T, rt http.RoundTripper, method string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, "https://127.0.0.1:6443/version", nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt.RoundTrip(req)
}

func TestLimitResponses(t *testing.T) {
	const limit = 1000
	cases := []struct {
		name          string
		bodyBytes     int64
		contentLength int64 // -1: unknown
		wantErr       bool
	}{
		{"empty", 0, -1, false},
		{"one byte under the cap", limit - 1, -1, false},
		{"exactly the cap", limit, -1, false},
		{"exactly the cap, with Content-Length", limit, limit, false},
		{"one byte over the cap", limit + 1, -1, true},
		{"far over the cap", 50 * limit, -1, true},
		{"Content-Length that lies low", 50 * limit, 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := newFakeBody(tc.bodyBytes)
			resp, err := get(t, LimitResponses(&fixedTransport{body: body, contentLength: tc.contentLength}, limit), http.MethodGet)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			data, err := io.ReadAll(resp.Body)
			if !tc.wantErr {
				if err != nil || int64(len(data)) != tc.bodyBytes {
					t.Fatalf("read %d bytes, %v; want all %d and no error", len(data), err, tc.bodyBytes)
				}
			} else {
				if !errors.Is(err, ErrResponseTooLarge) {
					t.Fatalf("read %d bytes, error %v; want ErrResponseTooLarge", len(data), err)
				}
				if len(data) != limit {
					t.Fatalf("the caller got %d bytes before the error, want the cap, %d", len(data), limit)
				}
			}
			if body.read > limit+1 {
				t.Fatalf("the underlying body was read for %d bytes, want at most the cap and one", body.read)
			}
			if err := resp.Body.Close(); err != nil || !body.closed {
				t.Fatalf("Close: %v; underlying body closed: %v", err, body.closed)
			}
		})
	}
}

func TestLimitResponsesErrorStays(t *testing.T) {
	body := newFakeBody(1 << 20)
	resp, err := get(t, LimitResponses(&fixedTransport{body: body, contentLength: -1}, 10), http.MethodGet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("ReadAll: %v", err)
	}
	readBefore := body.read
	// client-go drains up to 2 kB of a body before closing it.
	n, err := io.Copy(io.Discard, &io.LimitedReader{R: resp.Body, N: 2 << 10})
	if n != 0 || !errors.Is(err, ErrResponseTooLarge) || body.read != readBefore {
		t.Fatalf("a read after the error got %d bytes, %v, and read %d more underneath", n, err, body.read-readBefore)
	}
}

func TestLimitResponsesRefusesContentLength(t *testing.T) {
	body := newFakeBody(1 << 20)
	resp, err := get(t, LimitResponses(&fixedTransport{body: body, contentLength: 1 << 20}, 1000), http.MethodGet)
	if resp != nil || !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("RoundTrip = %v, %v; want no response and ErrResponseTooLarge", resp, err)
	}
	if body.read != 0 || !body.closed {
		t.Fatalf("the refused body was read for %d bytes, closed: %v; want unread and closed", body.read, body.closed)
	}
}

func TestLimitResponsesLetsHEADThrough(t *testing.T) {
	body := newFakeBody(0)
	resp, err := get(t, LimitResponses(&fixedTransport{body: body, contentLength: 1 << 30}, 1000), http.MethodHead)
	if err != nil {
		t.Fatalf("a HEAD response's Content-Length is refused: %v", err)
	}
	resp.Body.Close()
}

func TestLimitResponsesNegativeCap(t *testing.T) {
	body := newFakeBody(1)
	resp, err := get(t, LimitResponses(&fixedTransport{body: body, contentLength: -1}, -5), http.MethodGet)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := io.ReadAll(resp.Body); len(data) != 0 || !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("a negative cap read %d bytes, %v; want none and ErrResponseTooLarge", len(data), err)
	}
}

func TestResponseTooLargeMessage(t *testing.T) {
	for limit, want := range map[int64]string{
		DefaultMaxResponseBytes: "the workload API server's response was too large (over 4 MiB)",
		1 << 20:                 "the workload API server's response was too large (over 1 MiB)",
		1000:                    "the workload API server's response was too large (over 1000 bytes)",
		1<<20 + 1:               "the workload API server's response was too large (over 1048577 bytes)",
	} {
		_, err := get(t, LimitResponses(&fixedTransport{body: newFakeBody(0), contentLength: limit + 1}, limit), http.MethodGet)
		if err == nil || err.Error() != want {
			t.Errorf("cap %d: error %v, want %q", limit, err, want)
		}
	}
}

// countingTransport counts the bytes read from the bodies of its responses.
type countingTransport struct {
	rt   http.RoundTripper
	read atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, read: &t.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	read *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	return n, err
}

// endlessServer streams a JSON-looking body that never ends, with status, until the client goes away.
// served counts the bytes it wrote; done closes when the handler returns.
func endlessServer(t *testing.T, status int) (srv *httptest.Server, served *atomic.Int64, done chan struct{}) {
	served = &atomic.Int64{}
	done = make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		chunk := bytes.Repeat([]byte(`{"gitVersion":"v1.36.0"},`), 1<<10)
		for {
			n, err := w.Write(chunk)
			served.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, served, done
}

// TestServerVersionEndlessBody runs client-go's discovery ServerVersion against a server whose answer
// never ends: the call fails with ErrResponseTooLarge after reading no more than the cap, and the
// connection is closed, which ends the server's stream.
func TestServerVersionEndlessBody(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusInternalServerError} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv, served, done := endlessServer(t, status)
			counter := &countingTransport{}
			cfg := &rest.Config{Host: srv.URL, Timeout: 30 * time.Second, WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
				counter.rt = rt
				return LimitResponses(counter, DefaultMaxResponseBytes)
			}}
			client, err := discovery.NewDiscoveryClientForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.ServerVersion()
			if !errors.Is(err, ErrResponseTooLarge) {
				t.Fatalf("ServerVersion error %v, want one where errors.Is(err, ErrResponseTooLarge)", err)
			}
			t.Logf("client-go's error: %q", err)
			if read := counter.read.Load(); read > DefaultMaxResponseBytes+1 {
				t.Fatalf("the client read %d bytes of the body, want at most the cap and one (%d)", read, DefaultMaxResponseBytes+1)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("the server still streams after the client gave up (%d bytes served)", served.Load())
			}
			// What the client did not read sat in the two sockets' buffers, a few MiB on loopback.
			if served.Load() > 64<<20 {
				t.Fatalf("the server wrote %d bytes before the connection closed", served.Load())
			}
			t.Logf("client read %d bytes; server wrote %d bytes", counter.read.Load(), served.Load())
		})
	}
}

// TestRESTClientEndlessBody is the same through a RESTClient's Get().AbsPath("/version").Do.
func TestRESTClientEndlessBody(t *testing.T) {
	srv, _, _ := endlessServer(t, http.StatusOK)
	cfg := &rest.Config{Host: srv.URL, Timeout: 30 * time.Second, WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
		return LimitResponses(rt, 1<<20)
	}}
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	client, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Get().AbsPath("/version").Do(context.Background()).Raw()
	if !errors.Is(err, ErrResponseTooLarge) || !strings.Contains(err.Error(), "(over 1 MiB)") {
		t.Fatalf("Get /version: %v, want ErrResponseTooLarge naming the 1 MiB cap", err)
	}
}

// TestGzipBombIsCutAtTheCap serves 16 MiB that gzip to about 16 kB: the cap counts the decompressed
// bytes, which Go's transport produces under LimitResponses.
func TestGzipBombIsCutAtTheCap(t *testing.T) {
	var compressed bytes.Buffer
	zw := gzip.NewWriter(&compressed)
	if _, err := io.Copy(zw, io.LimitReader(zeros{}, 16<<20)); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	askedForGzip := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		askedForGzip <- strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(compressed.Bytes())
	}))
	defer srv.Close()
	counter := &countingTransport{}
	cfg := &rest.Config{Host: srv.URL, Timeout: 30 * time.Second, WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
		counter.rt = rt
		return LimitResponses(counter, 1<<20)
	}}
	client, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.ServerVersion()
	if !<-askedForGzip {
		t.Fatal("client-go did not ask for gzip, so this test does not test decompression")
	}
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("ServerVersion error %v, want ErrResponseTooLarge", err)
	}
	if read := counter.read.Load(); read > 1<<20+1 {
		t.Fatalf("the client decompressed %d bytes, want at most the cap and one", read)
	}
}

// TestServerVersionContentLengthOverTheCap checks a response that declares its size over the cap fails
// before its body is read, through client-go too.
func TestServerVersionContentLengthOverTheCap(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "10485760")
		n, _ := io.Copy(w, io.LimitReader(zeros{}, 10<<20))
		served.Add(n)
	}))
	defer srv.Close()
	counter := &countingTransport{}
	cfg := &rest.Config{Host: srv.URL, Timeout: 30 * time.Second, WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
		counter.rt = rt
		return LimitResponses(counter, DefaultMaxResponseBytes)
	}}
	client, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.ServerVersion()
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("ServerVersion error %v, want ErrResponseTooLarge", err)
	}
	t.Logf("client-go's error: %q", err)
	if read := counter.read.Load(); read != 0 {
		t.Fatalf("the client read %d bytes of a body it refused", read)
	}
}
