// Command kubelet is upstream's kubelet, built from the pinned module, for the test node.
package main

import (
	"context"
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	// Upstream passes a background context; a nil one panics.
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
