{{- /* The chart's name (app.kubernetes.io/name): nameOverride, else kube-scim. */ -}}
{{- define "kube-scim.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- /* Prefix of every object's name: fullnameOverride, else the release name, followed by the
chart's name unless the release name contains it. At most 50 characters, so that the longest
suffix (-operator-cluster-role-bindings) keeps names within 63. */ -}}
{{- define "kube-scim.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kube-scim.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kube-scim.operator" -}}{{ include "kube-scim.fullname" . }}-operator{{- end -}}
{{- define "kube-scim.server" -}}{{ include "kube-scim.fullname" . }}-server{{- end -}}

{{- /* ServiceAccounts: serviceAccount.operatorName / serverName, else the component's name. Two
different accounts always: the admission policy lets only the server's write ScimUsers. */ -}}
{{- define "kube-scim.operatorServiceAccount" -}}
{{- .Values.serviceAccount.operatorName | default (include "kube-scim.operator" .) -}}
{{- end -}}
{{- define "kube-scim.serverServiceAccount" -}}
{{- $server := .Values.serviceAccount.serverName | default (include "kube-scim.server" .) -}}
{{- if eq $server (include "kube-scim.operatorServiceAccount" .) -}}
{{- fail "serviceAccount.operatorName and serviceAccount.serverName must differ: only the server's account may write ScimUsers and ScimGroups" -}}
{{- end -}}
{{- $server -}}
{{- end -}}

{{- /* A duration as whole seconds: an integer (seconds), or a string of hours, minutes and
seconds such as 30s, 2m or 1m30s (values.schema.json allows no other form). */ -}}
{{- define "kube-scim.seconds" -}}
{{- if kindIs "string" . -}}
{{- $h := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | int -}}
{{- $m := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | int -}}
{{- $s := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | int -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- else -}}
{{- . | int -}}
{{- end -}}
{{- end -}}

{{- /* The server's durations in seconds, from server.requestTimeout and server.drainDelay, or
from the integer keys of earlier versions (requestTimeoutSeconds, drainSeconds), which win when
set. Stored where the templates read them. */ -}}
{{- define "kube-scim.serverDurations" -}}
{{- $server := .Values.server -}}
{{- $timeout := ternary $server.requestTimeoutSeconds $server.requestTimeout (kindIs "invalid" $server.requestTimeoutSeconds | not) -}}
{{- $drain := ternary $server.drainSeconds $server.drainDelay (kindIs "invalid" $server.drainSeconds | not) -}}
{{- $timeoutSeconds := include "kube-scim.seconds" $timeout | int -}}
{{- $drainSeconds := include "kube-scim.seconds" $drain | int -}}
{{- if or (lt $timeoutSeconds 1) (gt $timeoutSeconds 55) -}}
{{- fail (printf "server.requestTimeout %v is not between 1s and 55s (Entra gives up after 60 s)" $timeout) -}}
{{- end -}}
{{- if gt $drainSeconds 30 -}}
{{- fail (printf "server.drainDelay %v is over 30s" $drain) -}}
{{- end -}}
{{- $_ := set $server "requestTimeoutSeconds" $timeoutSeconds -}}
{{- $_ := set $server "drainSeconds" $drainSeconds -}}
{{- end -}}

{{- /* The Secret of the verifier keys: the user's, or the one the chart creates. */ -}}
{{- define "kube-scim.verifierKeys" -}}
{{- .Values.verifierKeys.existingSecret | default (printf "%s-verifier-keys" (include "kube-scim.fullname" .)) -}}
{{- end -}}

{{- /* Where both components read the verifier keys: env, mount and volume. */ -}}
{{- define "kube-scim.verifierKeyEnv" -}}
- name: KUBE_SCIM_VERIFIER_KEY_DIR
  value: /etc/kube-scim/verifier-keys
{{- end -}}

{{- define "kube-scim.verifierKeyMount" -}}
- name: verifier-keys
  mountPath: /etc/kube-scim/verifier-keys
  readOnly: true
{{- end -}}

{{- define "kube-scim.verifierKeyVolume" -}}
# Not a subPath mount: a changed Secret (a key rotation) reaches the running pods, which
# re-read the directory every 10 s.
- name: verifier-keys
  secret:
    secretName: {{ include "kube-scim.verifierKeys" . }}
    defaultMode: 0440
{{- end -}}

{{- define "kube-scim.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "kube-scim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "kube-scim.selector" -}}
app.kubernetes.io/name: {{ include "kube-scim.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* A component's image: its own repository/tag/digest (operator.image, server.image) where
set, else <image.registry>/<image.repository>/<name>:<image.tag or appVersion>; a digest pins it
(`repository:tag@digest`). */ -}}
{{- define "kube-scim.image" -}}
{{- $own := .own | default dict -}}
{{- $repository := $own.repository | default (printf "%s/%s/%s" .root.Values.image.registry .root.Values.image.repository .name) -}}
{{- $tag := $own.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if $own.digest -}}
{{- printf "%s:%s@%s" $repository $tag $own.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- /* Restricted Pod Security Standard, for every container; containerSecurityContext (when
not empty) replaces it whole, e.g. without runAsUser for OpenShift's restricted-v2 SCC. */ -}}
{{- define "kube-scim.containerSecurityContext" -}}
{{- if .Values.containerSecurityContext -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- else -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- end -}}

{{- /* podSecurityContext (when not empty) replaces it whole. */ -}}
{{- define "kube-scim.podSecurityContext" -}}
{{- if .Values.podSecurityContext -}}
{{- toYaml .Values.podSecurityContext -}}
{{- else -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- end -}}

{{- /* Namespaces that get a Role: the watched ones, or none when watching the whole cluster. */ -}}
{{- define "kube-scim.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end -}}
{{- end -}}
