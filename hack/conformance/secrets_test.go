package conformance

import (
	"testing"

	"github.com/argoproj/argo-cd/v2/util/db"
)

func TestPlaceholder(t *testing.T) { _ = db.SecretToCluster }
