// Package examples holds the YAML users apply (one folder per use) and the test that applies every file
// to a real API server, so the examples cannot rot.
package examples
