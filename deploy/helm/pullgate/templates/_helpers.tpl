{{- define "pullgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of every object (and of the Service, so the certificate's host): pullgate.<namespace>.svc with a
release named pullgate. */}}
{{- define "pullgate.fullname" -}}
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

{{- define "pullgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "pullgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pullgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pullgate.serviceHost" -}}
{{ include "pullgate.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end }}

{{- define "pullgate.tlsSecretName" -}}
{{- if eq .Values.certs.mode "existing-secret" }}
{{- required "certs.existingSecret.name is required with certs.mode=existing-secret" .Values.certs.existingSecret.name }}
{{- else }}
{{- include "pullgate.fullname" . }}-tls
{{- end }}
{{- end }}

{{- define "pullgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The settings file: values.config with nodePlatformDiscovery from its own key. Fails when the admission
budget does not fit in the webhook timeout. */}}
{{- define "pullgate.configYaml" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $_ := set $config "nodePlatformDiscovery" .Values.nodePlatformDiscovery.enabled }}
{{- if .Values.credentialProviders.enabled }}
{{- if not .Values.credentialProviders.config }}
{{- fail "credentialProviders.enabled needs credentialProviders.config (kubelet's CredentialProviderConfig)" }}
{{- end }}
{{- if not .Values.credentialProviders.binVolume }}
{{- fail "credentialProviders.enabled needs credentialProviders.binVolume (where the plugin binaries come from)" }}
{{- end }}
{{- $_ := set $config "credentialProviders" (dict "config" "/etc/pullgate/credential-providers/config/config.yaml" "binDir" "/etc/pullgate/credential-providers/bin" "timeoutSeconds" .Values.credentialProviders.timeoutSeconds) }}
{{- end }}
{{- if .Values.audit.enabled }}
{{- $_ := set $config "audit" (dict "intervalSeconds" .Values.audit.intervalSeconds "maxRequestsPerRegistryPerInterval" .Values.audit.maxRequestsPerRegistryPerInterval "maxSeries" .Values.audit.maxSeries "leaseName" (include "pullgate.auditLease" .) "leaseNamespace" .Release.Namespace) }}
{{- end }}
{{- $resolution := default dict (get $config "resolution") }}
{{- $budget := 8.0 }}
{{- if hasKey $resolution "budgetSeconds" }}
{{- $budget = float64 (get $resolution "budgetSeconds") }}
{{- end }}
{{- if ge $budget (float64 .Values.webhook.timeoutSeconds) }}
{{- fail (printf "config.resolution.budgetSeconds (%v) must be below webhook.timeoutSeconds (%v): the server must answer before the apiserver gives up" $budget .Values.webhook.timeoutSeconds) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The Lease that elects the replica running the continuous audit. */}}
{{- define "pullgate.auditLease" -}}
{{ include "pullgate.fullname" . }}-audit
{{- end }}
