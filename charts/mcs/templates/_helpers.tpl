{{/* Names and labels shared by every template. The object names are fixed (mcs-controller,
mcs-controller-local, ...) as in manifests/: the admission policy and the peers'
kubeconfigs name them, so one release per cluster. */}}

{{- define "mcs.labels" -}}
app.kubernetes.io/part-of: mcs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mcs.selectorLabels" -}}
app.kubernetes.io/name: mcs-controller
{{- end -}}

{{- define "mcs.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "mcs.secretName" -}}
{{ .Values.members.existingSecret | default "mcs-remote-kubeconfigs" }}
{{- end -}}

{{/* The admission policy needs admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy,
GA in Kubernetes 1.30: left out below, whatever admissionPolicy.enabled says. */}}
{{- define "mcs.admissionPolicy" -}}
{{- if and .Values.admissionPolicy.enabled (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}

{{/* --member-cidrs: "CONTEXT=CIDR[,CIDR] CONTEXT=..." in context order. */}}
{{- define "mcs.memberCIDRs" -}}
{{- $parts := list -}}
{{- range $ctx, $cidrs := .Values.memberCIDRs -}}
{{- $parts = append $parts (printf "%s=%s" $ctx (join "," $cidrs)) -}}
{{- end -}}
{{- join " " $parts -}}
{{- end -}}

{{/* A manifest of files/ with the chart's labels added and mcs-system replaced by the
release namespace (the admission policy's CEL names the namespace's ServiceAccounts). */}}
{{- define "mcs.fromFile" -}}
{{- $root := index . 0 -}}
{{- $doc := index . 1 -}}
{{- $extra := index . 2 -}}
{{- $meta := $doc.metadata -}}
{{- $_ := set $meta "labels" (merge (dict) (include "mcs.labels" $root | fromYaml) ($meta.labels | default dict)) -}}
{{- if $extra -}}
{{- $_ := set $meta "annotations" (merge (dict) $extra ($meta.annotations | default dict)) -}}
{{- end -}}
{{ toYaml $doc }}
{{- end -}}
