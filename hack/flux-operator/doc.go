// Package fluxoperator exists so the module has a package; the module only pins Flux Operator for
// `go build`.
package fluxoperator
