package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/fleetbridge/fleetbridge/internal/testenv"
)

// The committed reference matches the chart, the flags and the CRDs: a new value, flag or field without
// `make docs` fails here.
func TestReferenceIsCurrent(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, ReferencePath))
	if err != nil {
		t.Fatalf("%v: run `make docs`", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `make docs`", ReferencePath)
	}
	for _, must := range []string{"`plugin.token.value`", "`rbac.clusterNamespaces`", "`--secret-namespaces`", "`spec.credentials.tokenTTL`", "`spec.overrides[].values`"} {
		if !bytes.Contains(want, []byte(must)) {
			t.Errorf("the reference does not document %s", must)
		}
	}
}
