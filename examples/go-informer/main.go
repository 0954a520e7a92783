package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

var scimUsers = schema.GroupVersionResource{Group: "kubescim.io", Version: "v1alpha1", Resource: "scimusers"}

func main() {
	namespace, directory := os.Args[1], os.Args[2]
	// In a pod, rest.InClusterConfig() instead.
	config, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		panic(err)
	}
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(
		dynamic.NewForConfigOrDie(config), 10*time.Minute, namespace,
		func(o *metav1.ListOptions) { o.LabelSelector = "kubescim.io/directory=" + directory })
	informer := factory.ForResource(scimUsers).Informer()
	informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { report("created", obj) },
		UpdateFunc: func(old, cur interface{}) {
			// A periodic resync calls UpdateFunc with the same version: not a change.
			if old.(*unstructured.Unstructured).GetResourceVersion() != cur.(*unstructured.Unstructured).GetResourceVersion() {
				report("modified", cur)
			}
		},
		DeleteFunc: func(obj interface{}) {
			// Deleted while the watch was down: the last state the informer knew.
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			report("deleted", obj)
		},
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	factory.Start(ctx.Done())
	<-ctx.Done()
}

func report(event string, obj interface{}) {
	user := obj.(*unstructured.Unstructured)
	userName, _, _ := unstructured.NestedString(user.Object, "status", "userName")
	active, _, _ := unstructured.NestedBool(user.Object, "status", "active")
	fmt.Printf("{\"event\":%q,\"id\":%q,\"userName\":%q,\"active\":%t}\n", event, user.GetName(), userName, active)
}
