// The test node's sandbox image binary: standard library only.
module github.com/kube-scim/kube-scim/tests/node/pause

go 1.26.0
