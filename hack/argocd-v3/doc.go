// Package argocdv3 exists so the module has a package; the module only pins Argo CD v3 for `go build`.
package argocdv3
