{{/* Chart name, truncated to a DNS label. */}}
{{- define "lockgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-lockgate, or <release> when it already contains the chart name. */}}
{{- define "lockgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lockgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "lockgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lockgate.labels" -}}
helm.sh/chart: {{ include "lockgate.chart" . }}
{{ include "lockgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: lockgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lockgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lockgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions, and nothing more. The same rules go into the ClusterRole
(all namespaces) or into one Role per watched namespace.
- SchemaMigrations: watched, and patched to claim Jobs; status written with optimistic locking.
- Jobs: one per (SchemaMigration, version, phase), created suspended and started (patched) once
  bound to their claim; a late create bound to nothing is deleted unrun; patched to remove
  lockgate's result finalizer.
- Pods: Job pods are read for the runner's result; gated pods get their readiness gate via pods/status;
  the log tail of a running background pod carries its progress (the pod itself has no API access).
- Workloads: read to know when a rollout is complete (contract waits for it).
- Events: one per step, core and events.k8s.io; core Warning Events are listed to say why a
  started Job runs no container (FailedCreate, FailedMount).
No Secrets: migration Jobs read the database URL themselves through secretKeyRef.
*/}}
{{- define "lockgate.rules" -}}
- apiGroups: ["lockgate.dev"]
  resources: ["schemamigrations"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["lockgate.dev"]
  resources: ["schemamigrations/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch", "list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.secretSelector }}
# spec.targets.databases.selector: lockgate lists the matching Secrets' names only (metadata),
# but this right would let whoever holds the token read their data too.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list"]
{{- end }}
{{- end }}
