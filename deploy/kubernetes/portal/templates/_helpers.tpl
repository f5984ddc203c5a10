{{/* Names and labels shared by every template. */}}

{{- define "portal.name" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portal.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: portal
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Values.image.tag | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "portal.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* One service's settings: serviceDefaults under the service's own entry. */}}
{{- define "portal.service" -}}
{{- $defaults := deepCopy .root.Values.serviceDefaults -}}
{{- toYaml (mergeOverwrite $defaults (deepCopy .config)) -}}
{{- end -}}

{{- define "portal.kafkaBootstrap" -}}
{{- .Values.kafka.bootstrap | default (printf "%s-kafka-bootstrap:9092" .Values.kafka.name) -}}
{{- end -}}

{{/* A Kubernetes object name from a topic or group name (dots allowed, no underscores). */}}
{{- define "portal.objectName" -}}
{{- . | lower | replace "_" "-" | trunc 63 | trimSuffix "-" | trimSuffix "." -}}
{{- end -}}

{{/* Every topic a service touches: what it consumes, publishes, and its dead letters. */}}
{{- define "portal.serviceTopics" -}}
{{- $topics := list -}}
{{- range $group, $consumed := .svc.consumerGroups -}}
{{- $topics = concat $topics $consumed (list (printf "portal.dlq.%s" $group)) -}}
{{- end -}}
{{- $topics = concat $topics (.svc.publishes | default list) -}}
{{- $prefixed := list -}}
{{- range (uniq $topics) -}}
{{- $prefixed = append $prefixed (printf "%s%s" $.root.Values.topicPrefix .) -}}
{{- end -}}
{{- join "," (sortAlpha $prefixed) -}}
{{- end -}}
