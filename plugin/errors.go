package plugin

import (
	"errors"
	"net/http"
)

// errorKind classifies an error for the status table.
type errorKind int

const (
	kindInternal errorKind = iota
	kindBadRequest
	kindUnauthorized
	kindForbidden
	kindTooLarge
	kindNotReady
	kindNotFound
	kindUnprocessable
)

// Error is an error with a kind; its message is what the client reads in {"error": ...}.
type Error struct {
	kind errorKind
	msg  string
}

func (e *Error) Error() string { return e.msg }

func newError(kind errorKind, msg string) *Error { return &Error{kind: kind, msg: msg} }

// statusOf is the one table from errors to HTTP statuses. Anything unclassified is a 500: the server
// does not know the answer, and a non-2xx makes Argo CD keep the Applications it has.
var statusOf = map[errorKind]int{
	kindInternal:      http.StatusInternalServerError,
	kindBadRequest:    http.StatusBadRequest,
	kindUnauthorized:  http.StatusUnauthorized,
	kindForbidden:     http.StatusForbidden,
	kindTooLarge:      http.StatusRequestEntityTooLarge,
	kindNotReady:      http.StatusServiceUnavailable,
	kindNotFound:      http.StatusNotFound,
	kindUnprocessable: http.StatusUnprocessableEntity,
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return statusOf[e.kind]
	}
	return http.StatusInternalServerError
}
