// Package kubeconfig owns reading CAPI kubeconfigs into self-contained credentials. It never follows file
// references (a kubeconfig in a Secret that names /var/run/secrets/... would otherwise make the controller
// send its own credentials to whatever server the kubeconfig names) and never runs exec plugins itself.
// Its errors say what is wrong in the kubeconfig's structure and never quote credential material.
package kubeconfig
