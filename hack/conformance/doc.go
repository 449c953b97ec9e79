// Package conformance feeds fleetbridge's output to Argo CD's own parsers and clients.
package conformance
