{{/* Names and labels shared by every template. */}}

{{/* The name part: the chart name unless nameOverride. */}}
{{- define "csrgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The base of every object name: fullnameOverride, else the release name when it already
contains the chart name, else <release>-<name>. Object names add a suffix (-controller, ...),
so it is cut to 40 characters to keep them within 63.
*/}}
{{- define "csrgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "csrgate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the controller Pods (Deployment, Service, PDB, anti-affinity). */}}
{{- define "csrgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csrgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* Labels of every object. */}}
{{- define "csrgate.labels" -}}
app.kubernetes.io/name: {{ include "csrgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: csrgate
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The controller image: repository@digest, else repository:tag. */}}
{{- define "csrgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* The controller's arguments, in the order deploy/base/deployment.yaml gives them. */}}
{{- define "csrgate.args" -}}
- controller
{{- if .Values.leaderElection.enabled }}
- --leader-elect
- --lease-name={{ .Values.leaderElection.leaseName }}
- --lease-duration={{ .Values.leaderElection.leaseDurationSeconds }}
{{- end }}
- --metrics-addr=0.0.0.0:{{ .Values.metrics.port }}
- --log-format={{ .Values.logFormat }}
{{- if not .Values.nodeWatch }}
- --no-node-watch
{{- end }}
{{- if .Values.dryRun }}
- --dry-run
{{- end }}
{{- with .Values.maxPendingPerSigner }}
- --max-pending-per-signer={{ . }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
