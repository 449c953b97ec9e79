package plugin

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-logr/logr"
)

// AdminTokenFile is the token file name (and prefix: "token.next" during a rotation) whose tokens have
// the full scope. It is the key the default install's token Secret has.
const AdminTokenFile = "token"

// Tokens are the bearer tokens the server accepts, each bound to a Scope.
//   - Static tokens (--plugin-token, FLEETBRIDGE_PLUGIN_TOKEN) have the full scope and never change.
//   - Every regular file in a directory (a mounted Secret) is a token: a file named "token" (or
//     "token.<anything>") has the full scope, a file named after a tenant (or "<tenant>.<anything>", so a
//     rotation keeps the old and the new token valid side by side) has that tenant's scope.
//   - The tenants come from a file (a mounted ConfigMap, see TenantsFile).
//
// The directory and the tenants file are read again at most every reloadEvery, so a rotation, a new
// tenant or a revocation takes effect without a restart. A token file that fails (an undeclared tenant)
// is left out and the others load; a directory or tenants file that cannot be read keeps the last good
// tokens. Both are logged and counted.
type Tokens struct {
	dir, tenantsFile string
	reloadEvery      time.Duration
	now              func() time.Time
	log              logr.Logger
	static           []scopedToken

	mu       sync.Mutex
	loadedAt time.Time
	loaded   []scopedToken
	tenants  map[string]*Scope
	err      error
	// staticShared is set while a static token equals a loaded tenant's token.
	staticShared bool
}

type scopedToken struct {
	token []byte
	scope *Scope
}

// TokenSource says where tokens come from.
type TokenSource struct {
	// Dir holds one token per file (a mounted Secret).
	Dir string
	// TenantsFile declares the tenants whose names token files carry.
	TenantsFile string
	// Static tokens have the full scope.
	Static []string
	// ReloadEvery is how stale Dir and TenantsFile may be.
	ReloadEvery time.Duration
	Log         logr.Logger
}

// NewTokens reads the tokens of a source, which must give at least one.
func NewTokens(src TokenSource) (*Tokens, error) {
	t := &Tokens{dir: src.Dir, tenantsFile: src.TenantsFile, reloadEvery: src.ReloadEvery, now: time.Now, log: src.Log}
	if t.log.GetSink() == nil {
		t.log = logr.Discard()
	}
	for _, tok := range src.Static {
		if tok = strings.TrimSpace(tok); tok != "" {
			t.static = append(t.static, scopedToken{token: []byte(tok), scope: AdminScope()})
		}
	}
	if t.dir == "" && t.tenantsFile != "" {
		return nil, fmt.Errorf("plugin tokens: a tenants file needs a tokens directory with the tenants' tokens")
	}
	if t.dir != "" {
		if err := t.load(); err != nil {
			if t.loadedAt.IsZero() {
				return nil, err // the directory or the tenants file cannot be read at all
			}
			// Files that fail are left out; the server starts with the tokens that load.
			tokenReloadFailures.Inc()
			t.log.Error(err, "some plugin tokens are not accepted")
			t.err = err
		}
	}
	if len(t.usableStatic())+len(t.loaded) == 0 {
		return nil, fmt.Errorf("plugin: no bearer token configured (--plugin-tokens-dir or --plugin-token)")
	}
	return t, nil
}

// StaticTokens accepts exactly the given tokens, with the full scope (tests and local runs).
func StaticTokens(tokens ...string) *Tokens {
	t := &Tokens{now: time.Now, log: logr.Discard()}
	for _, tok := range tokens {
		t.static = append(t.static, scopedToken{token: []byte(tok), scope: AdminScope()})
	}
	return t
}

// load reads the directory and the tenants file; on error the last good tokens stay.
func (t *Tokens) load() error {
	tenants := map[string]*Scope{}
	if t.tenantsFile != "" {
		var err error
		if tenants, err = readTenants(t.tenantsFile); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return fmt.Errorf("plugin tokens: %w", err)
	}
	var tokens []scopedToken
	var problems []error
	for _, e := range entries {
		// Kubernetes mounts Secret keys as symlinks into a hidden ..data directory.
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(t.dir, e.Name()))
		if err != nil {
			continue // a directory, or a key removed between the listing and the read
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			continue
		}
		owner, _, _ := strings.Cut(e.Name(), ".")
		scope := tenants[owner]
		switch {
		case owner == AdminTokenFile:
			scope = AdminScope()
		case scope == nil:
			// Only this file fails: its token is not accepted (fail closed), the others stay.
			problems = append(problems, fmt.Errorf("file %s names no declared tenant (declare %q in the tenants file, or name the file %q for the full scope)", e.Name(), owner, AdminTokenFile))
			continue
		}
		tokens = append(tokens, scopedToken{token: []byte(tok), scope: scope})
	}
	// A token shared by two scopes would get whichever is checked last: refuse every copy of it.
	all := append(append([]scopedToken(nil), t.static...), tokens...)
	shared := map[int]bool{}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].scope.Tenant != all[j].scope.Tenant && subtle.ConstantTimeCompare(all[i].token, all[j].token) == 1 {
				shared[i], shared[j] = true, true
			}
		}
	}
	if len(shared) > 0 {
		problems = append(problems, fmt.Errorf("%d token files or static tokens hold a token of another scope; none of them is accepted", len(shared)))
		kept := tokens[:0]
		for i, tok := range tokens {
			if !shared[len(t.static)+i] {
				kept = append(kept, tok)
			}
		}
		tokens = kept
	}
	t.staticShared = false
	for i := range t.static {
		t.staticShared = t.staticShared || shared[i]
	}
	t.loaded, t.tenants, t.loadedAt = tokens, tenants, t.now()
	if len(tokens) == 0 && len(t.static) == 0 {
		problems = append(problems, fmt.Errorf("no token in %s", t.dir))
	}
	if len(problems) > 0 {
		return fmt.Errorf("plugin tokens: %w", errors.Join(problems...))
	}
	return nil
}

// TenantScope is a declared tenant's scope; nil when it is not declared.
func (t *Tokens) TenantScope(name string) *Scope {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reloadIfDue()
	return t.tenants[name]
}

// reloadIfDue reads the directory and the tenants file again when reloadEvery has passed. Files that
// fail are left out and the rest is used; a directory or tenants file that cannot be read keeps the last
// good tokens. Either is logged (once per distinct error) and counted. Call with mu held.
func (t *Tokens) reloadIfDue() {
	if t.dir == "" || t.now().Sub(t.loadedAt) < t.reloadEvery {
		return
	}
	err := t.load()
	if err != nil {
		tokenReloadFailures.Inc()
		if t.err == nil || t.err.Error() != err.Error() {
			t.log.Error(err, "could not reload every plugin token")
		}
		// Retry at the next interval, not on every request.
		t.loadedAt = t.now()
	}
	t.err = err
}

// scopeOf is the scope of a presented token, comparing in constant time against every accepted one; nil
// when none matches.
func (t *Tokens) scopeOf(presented string) *Scope {
	t.mu.Lock()
	t.reloadIfDue()
	loaded, static := t.loaded, t.usableStatic()
	t.mu.Unlock()
	if presented == "" {
		return nil
	}
	var match *Scope
	for _, list := range [][]scopedToken{static, loaded} {
		for _, tok := range list {
			if subtle.ConstantTimeCompare(tok.token, []byte(presented)) == 1 {
				match = tok.scope
			}
		}
	}
	return match
}

// usableStatic are the static tokens, unless one of them is also a tenant's token (then none is
// accepted: which scope it stands for is unknowable). Call with mu held, or before the server runs.
func (t *Tokens) usableStatic() []scopedToken {
	if t.staticShared {
		return nil
	}
	return t.static
}

// scopeKey is where requireToken leaves the request's scope for the handlers.
const scopeKey = "fleetbridge.scope"

// requireToken is the auth middleware: `Authorization: Bearer <token>` (the scheme in any case, as
// RFC 9110 says) or 401 with a Bearer challenge. The token's scope goes into the request context.
func (s *Server) requireToken(c *gin.Context) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(c.GetHeader("Authorization")), " ")
	var scope *Scope
	if strings.EqualFold(scheme, "Bearer") {
		scope = s.tokens.scopeOf(strings.TrimSpace(token))
	}
	if scope == nil {
		c.Header("WWW-Authenticate", `Bearer realm="fleetbridge"`)
		s.fail(c, newError(kindUnauthorized, "missing or invalid bearer token"))
		c.Abort()
		return
	}
	c.Set(scopeKey, scope)
	c.Next()
}

// scopeFrom is the scope requireToken found.
func scopeFrom(c *gin.Context) *Scope {
	if v, ok := c.Get(scopeKey); ok {
		if scope, ok := v.(*Scope); ok {
			return scope
		}
	}
	return &Scope{Tenant: "none", WorkloadNamespaces: []string{}, Registrations: []string{}}
}

// ScopeOfNamespace is the scope of the one declared tenant whose Workload namespaces include namespace;
// nil when none or several do.
func (t *Tokens) ScopeOfNamespace(namespace string) *Scope {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reloadIfDue()
	var found *Scope
	for _, scope := range t.tenants {
		if slices.Contains(scope.WorkloadNamespaces, namespace) {
			if found != nil {
				return nil
			}
			found = scope
		}
	}
	return found
}
