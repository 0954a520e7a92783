module github.com/kube-scim/kube-scim/examples/webhook-receiver-go

go 1.26

require github.com/standard-webhooks/standard-webhooks/libraries v1.3.0
