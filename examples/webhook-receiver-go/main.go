package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

type Event struct {
	ID         string          `json:"id"`
	Event      string          `json:"event"`
	Transition string          `json:"transition"`
	Data       json.RawMessage `json:"data"`
}

// With batching one request carries {"object":"list","data":[Event...]}.
type Delivery struct {
	Object string  `json:"object"`
	Data   []Event `json:"data"`
}

var (
	mu   sync.Mutex
	seen = map[string]bool{} // use your database: the event id is the idempotency key
)

func main() {
	// Verify rejects a bad signature and a timestamp more than 5 minutes off (a stale replay).
	wh, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET")) // whsec_...
	if err != nil {
		panic(err)
	}
	http.HandleFunc("/hooks/directory", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var events []Event
		var batch Delivery
		if err := json.Unmarshal(body, &batch); err == nil && batch.Object == "list" {
			events = batch.Data
		} else {
			var event Event
			if err := json.Unmarshal(body, &event); err != nil {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			events = []Event{event}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, event := range events {
			if seen[event.ID] { // a redelivery: already handled
				continue
			}
			seen[event.ID] = true
			// Act here, and store event.ID with the change in one transaction.
			fmt.Println(event.ID, event.Event, event.Transition)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	addr := os.Getenv("LISTEN_ADDRESS")
	if addr == "" {
		addr = ":8080"
	}
	if err := http.ListenAndServe(addr, nil); err != nil {
		panic(err)
	}
}
