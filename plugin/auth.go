package plugin

import (
	"crypto/subtle"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Tokens are the bearer tokens the server accepts: every regular file in a directory (a mounted Secret,
// so a rotation can keep the old and the new token valid side by side). The directory is read again at
// most every reloadEvery, so a rotated Secret takes effect without a restart.
type Tokens struct {
	dir         string
	reloadEvery time.Duration
	now         func() time.Time

	mu       sync.Mutex
	loadedAt time.Time
	tokens   [][]byte
	err      error
}

// NewTokens reads tokens from dir, which must hold at least one non-empty file.
func NewTokens(dir string, reloadEvery time.Duration) (*Tokens, error) {
	t := &Tokens{dir: dir, reloadEvery: reloadEvery, now: time.Now}
	if err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

// StaticTokens accepts exactly the given tokens (tests, and `--plugin-token` for local runs).
func StaticTokens(tokens ...string) *Tokens {
	t := &Tokens{reloadEvery: -1, now: time.Now}
	for _, tok := range tokens {
		t.tokens = append(t.tokens, []byte(tok))
	}
	return t
}

func (t *Tokens) load() error {
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return fmt.Errorf("plugin tokens: %w", err)
	}
	var tokens [][]byte
	for _, e := range entries {
		// Kubernetes mounts Secret keys as symlinks into a hidden ..data directory.
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(t.dir, e.Name()))
		if err != nil {
			continue
		}
		if tok := strings.TrimSpace(string(data)); tok != "" {
			tokens = append(tokens, []byte(tok))
		}
	}
	if len(tokens) == 0 {
		return fmt.Errorf("plugin tokens: no token in %s", t.dir)
	}
	t.tokens, t.loadedAt = tokens, t.now()
	return nil
}

// valid compares in constant time against every accepted token.
func (t *Tokens) valid(presented string) bool {
	t.mu.Lock()
	if t.reloadEvery >= 0 && t.now().Sub(t.loadedAt) >= t.reloadEvery {
		// A failed reload keeps the last good tokens.
		t.err = t.load()
	}
	tokens := t.tokens
	t.mu.Unlock()
	ok := 0
	for _, tok := range tokens {
		ok |= subtle.ConstantTimeCompare(tok, []byte(presented))
	}
	return ok == 1 && presented != ""
}

// requireToken is the auth middleware: `Authorization: Bearer <token>` or 401.
func (s *Server) requireToken(c *gin.Context) {
	header := c.GetHeader("Authorization")
	token, found := strings.CutPrefix(header, "Bearer ")
	if !found || !s.tokens.valid(strings.TrimSpace(token)) {
		s.fail(c, newError(kindUnauthorized, "missing or invalid bearer token"))
		c.Abort()
		return
	}
	c.Next()
}
