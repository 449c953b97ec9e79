package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// schemaNode is the part of a JSON schema the values table shows.
type schemaNode struct {
	Type        string                 `json:"type"`
	Description string                 `json:"description"`
	Enum        []any                  `json:"enum"`
	Pattern     string                 `json:"pattern"`
	Properties  map[string]*schemaNode `json:"properties"`
}

func writeValues(out *bytes.Buffer, root string) error {
	chart := filepath.Join(root, "config/helm/fleetbridge")
	raw, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	if err != nil {
		return err
	}
	schema := &schemaNode{}
	if err := json.Unmarshal(raw, schema); err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	raw, err = os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	defaults := map[string]any{}
	if err := yaml.Unmarshal(raw, &defaults); err != nil {
		return fmt.Errorf("values.yaml: %w", err)
	}
	out.WriteString("## Helm values\n\n`helm install fleetbridge ./config/helm/fleetbridge -n fleetbridge-system --set key=value`\n\n")
	out.WriteString("| value | type | default | description |\n|---|---|---|---|\n")
	var walk func(prefix string, n *schemaNode, def any) error
	walk = func(prefix string, n *schemaNode, def any) error {
		if n.Type == "object" && len(n.Properties) > 0 {
			defMap, _ := def.(map[string]any)
			for _, k := range sortedKeys(n.Properties) {
				if err := walk(join(prefix, k), n.Properties[k], defMap[k]); err != nil {
					return err
				}
			}
			for k := range defMap {
				if n.Properties[k] == nil {
					return fmt.Errorf("values.yaml sets %s, which values.schema.json does not describe", join(prefix, k))
				}
			}
			return nil
		}
		if n.Description == "" {
			return fmt.Errorf("values.schema.json: %s has no description", prefix)
		}
		typ := n.Type
		if len(n.Enum) > 0 {
			typ = fmt.Sprintf("one of %v", n.Enum)
		}
		d, _ := json.Marshal(def)
		fmt.Fprintf(out, "| `%s` | %s | `%s` | %s |\n", prefix, typ, d, cell(n.Description))
		return nil
	}
	if err := walk("", schema, defaults); err != nil {
		return err
	}
	out.WriteString("\n")
	return nil
}

func writeFlags(out *bytes.Buffer, root string) error {
	help, err := helpOutput(root)
	if err != nil {
		return err
	}
	out.WriteString("## Flags of the fleetbridge binary\n\n| flag | type | description |\n|---|---|---|\n")
	sc := bufio.NewScanner(bytes.NewReader(help))
	var name, typ string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  -"):
			fields := strings.Fields(strings.TrimPrefix(line, "  -"))
			name, typ = fields[0], "bool"
			if len(fields) > 1 {
				typ = fields[1]
			}
		case strings.HasPrefix(line, "    \t") && name != "":
			fmt.Fprintf(out, "| `--%s` | %s | %s |\n", name, typ, cell(strings.TrimSpace(line)))
			name = ""
		}
	}
	out.WriteString("\n")
	return nil
}

func writeCRD(out *bytes.Buffer, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, v := range crd.Spec.Versions {
		fmt.Fprintf(out, "## %s (%s/%s, %s)\n\n", crd.Spec.Names.Kind, crd.Spec.Group, v.Name, strings.ToLower(string(crd.Spec.Scope)))
		out.WriteString("| field | type | description |\n|---|---|---|\n")
		s := v.Schema.OpenAPIV3Schema
		for _, top := range []string{"spec", "status"} {
			if p, ok := s.Properties[top]; ok {
				writeFields(out, top, &p)
			}
		}
		out.WriteString("\n")
	}
	return nil
}

func writeFields(out *bytes.Buffer, path string, s *apiextensionsv1.JSONSchemaProps) {
	for _, k := range sortedKeys(s.Properties) {
		p := s.Properties[k]
		field := path + "." + k
		typ := p.Type
		if p.Type == "array" && p.Items != nil && p.Items.Schema != nil {
			typ = "[]" + p.Items.Schema.Type
		}
		desc := p.Description
		if p.Default != nil {
			desc += fmt.Sprintf(" Default: `%s`.", p.Default.Raw)
		}
		for _, rule := range p.XValidations {
			desc += " Rule: " + rule.Message + "."
		}
		fmt.Fprintf(out, "| `%s` | %s | %s |\n", field, typ, cell(desc))
		switch {
		case p.Type == "object" && len(p.Properties) > 0 && !isLabelSelector(&p):
			writeFields(out, field, &p)
		case p.Type == "array" && p.Items != nil && p.Items.Schema != nil && len(p.Items.Schema.Properties) > 0 && k != "conditions":
			writeFields(out, field+"[]", p.Items.Schema)
		}
	}
}

// isLabelSelector keeps Kubernetes' own LabelSelector out of the table: its fields are documented upstream.
func isLabelSelector(p *apiextensionsv1.JSONSchemaProps) bool {
	_, a := p.Properties["matchLabels"]
	_, b := p.Properties["matchExpressions"]
	return a && b
}

func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", "\\|")
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
