{{/* The chart's name, truncated for label values. */}}
{{- define "fleetbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name for objects; component suffixes keep it under 63 characters. */}}
{{- define "fleetbridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else if contains (include "fleetbridge.name" .) .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "fleetbridge.name" .) | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "fleetbridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleetbridge
{{ include "fleetbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "fleetbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleetbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The components to deploy: one Deployment named "" running both, or, when split, "registrar" and
"plugin". Each entry is "<component>" and the caller derives names with fleetbridge.componentName.
*/}}
{{- define "fleetbridge.components" -}}
{{- if .Values.split }}
{{- if .Values.registrar.enabled }}registrar {{ end }}
{{- if .Values.plugin.enabled }}plugin{{ end }}
{{- else -}}
all
{{- end }}
{{- end }}

{{/* fleetbridge.componentName: (list $ "registrar"|"plugin"|"all") -> object name. */}}
{{- define "fleetbridge.componentName" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- if eq $c "all" }}{{ include "fleetbridge.fullname" $root }}{{ else }}{{ printf "%s-%s" (include "fleetbridge.fullname" $root) $c }}{{ end }}
{{- end }}

{{/* Does a component run the registrar / the plugin? */}}
{{- define "fleetbridge.runsRegistrar" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- if and $root.Values.registrar.enabled (or (eq $c "all") (eq $c "registrar")) }}true{{ end }}
{{- end }}
{{- define "fleetbridge.runsPlugin" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- if and $root.Values.plugin.enabled (or (eq $c "all") (eq $c "plugin")) }}true{{ end }}
{{- end }}

{{/* The namespaces fleetbridge writes Secrets in, comma-separated; empty means all. */}}
{{- define "fleetbridge.secretNamespaces" -}}
{{- if not .Values.rbac.allNamespaceSecrets }}
{{- $ns := .Values.rbac.secretNamespaces | default (list .Values.argocd.namespace) }}
{{- $ns | uniq | join "," }}
{{- end }}
{{- end }}

{{/* The plugin Service's in-cluster URL. */}}
{{- define "fleetbridge.pluginURL" -}}
http://{{ include "fleetbridge.fullname" . }}-plugin.{{ .Release.Namespace }}.svc:{{ .Values.plugin.port }}
{{- end }}

{{/* The base URLs at which Flux Operator reaches the plugin: the Service's in-cluster names, then
plugin.fluxURLs. */}}
{{- define "fleetbridge.fluxURLs" -}}
{{- $svc := printf "%s-plugin.%s" (include "fleetbridge.fullname" .) .Release.Namespace }}
{{- $urls := list }}
{{- range $suffix := list "" ".svc" ".svc.cluster.local" }}
{{- $urls = append $urls (printf "http://%s%s:%v" $svc $suffix $.Values.plugin.port) }}
{{- end }}
{{- concat $urls .Values.plugin.fluxURLs | uniq | join "," }}
{{- end }}

{{- define "fleetbridge.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
