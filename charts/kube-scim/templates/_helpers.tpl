{{- define "kube-scim.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kube-scim.operator" -}}{{ include "kube-scim.fullname" . }}-operator{{- end -}}
{{- define "kube-scim.server" -}}{{ include "kube-scim.fullname" . }}-server{{- end -}}

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
app.kubernetes.io/name: kube-scim
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kube-scim.selector" -}}
app.kubernetes.io/name: kube-scim
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
