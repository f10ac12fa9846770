{{- define "nodeagent.labels" -}}
app.kubernetes.io/name: nodeagent
app.kubernetes.io/part-of: nodeagent
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nodeagent.selector" -}}
app.kubernetes.io/name: nodeagent
app.kubernetes.io/component: agent
{{- end -}}

{{- define "nodeagent.monitoringLabels" -}}
{{- if .Values.monitoring.serviceMonitor.release }}
release: {{ .Values.monitoring.serviceMonitor.release | quote }}
{{- end }}
{{- end -}}

{{/* The profiles ConfigMap's data: the examples, then the user's (which win on a name clash). */}}
{{- define "nodeagent.profiles" -}}
{{- $data := dict -}}
{{- if .Values.profiles.examples -}}
{{- range $path, $_ := .Files.Glob "files/profiles/*.yaml" -}}
{{- $_ := set $data (base $path) ($.Files.Get $path) -}}
{{- end -}}
{{- end -}}
{{- range $name, $text := .Values.profiles.files -}}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9._-]*\\.ya?ml$" $name) -}}
{{- fail (printf "profiles.files: %q is not a file name ending in .yaml" $name) -}}
{{- end -}}
{{- $_ := set $data $name $text -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}
