package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// runTestService is the operator's per-stream service of the proxy tests, run
// as a child process (this test binary with SLUICE_TEST_SERVICE=NAME): an HTTP
// service that echoes what reached it and records its add and remove hooks,
// and grpc-go's health service, which answers SERVING for NAME alone and
// records the deadline of every streaming call. It
// prints "service NAME http ADDR grpc ADDR" and serves until killed.
func runTestService(name string) int {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Every gRPC call's deadline, as the time it had left when it arrived
	// (-1: none), so a test can see that the client's deadline came through.
	var dmu sync.Mutex
	var deadlines []int64
	gs := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		left := int64(-1)
		if dl, ok := ss.Context().Deadline(); ok {
			left = time.Until(dl).Milliseconds()
		}
		dmu.Lock()
		deadlines = append(deadlines, left)
		dmu.Unlock()
		return h(srv, ss)
	}))
	hs := health.NewServer()
	hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(gl) }()

	var mu sync.Mutex
	var hooks []map[string]any
	var cancelled atomic.Int64
	mux := http.NewServeMux()
	hook := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var h map[string]any
			if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			h["hook"] = kind
			mu.Lock()
			hooks = append(hooks, h)
			mu.Unlock()
		}
	}
	mux.HandleFunc("POST /stream/add", hook("add"))
	mux.HandleFunc("POST /stream/remove", hook("remove"))
	mux.HandleFunc("GET /hooks", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(hooks)
	})
	// A WebSocket at /echo/ws sends back what it gets, prefixed by the name.
	mux.Handle("/echo/ws", websocket.Handler(func(c *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(c, &msg) == nil {
			if websocket.Message.Send(c, name+": "+msg) != nil {
				return
			}
		}
	}))
	echo := func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"service": name, "method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery,
			"stream": r.Header.Get("X-Stream-Id"), "forwardedFor": r.Header.Get("X-Forwarded-For"), "bodyBytes": n,
		})
	}
	mux.HandleFunc("/echo/", echo)
	mux.HandleFunc("/api/", echo) // as an origin, the service gets the path as the client sent it
	// /hang answers nothing until its caller goes, and counts those that went.
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		cancelled.Add(1)
	})
	// /status/N answers N: a service that times out (504) or has recovered (200).
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "bad code", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})
	// /hold answers nothing at all — not even a status — until its caller
	// goes; /holding says how many are held now.
	var holding atomic.Int64
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		holding.Add(1)
		defer holding.Add(-1)
		<-r.Context().Done()
	})
	mux.HandleFunc("GET /holding", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, holding.Load())
	})
	mux.HandleFunc("GET /grpc-deadlines", func(w http.ResponseWriter, _ *http.Request) {
		dmu.Lock()
		defer dmu.Unlock()
		_ = json.NewEncoder(w).Encode(deadlines)
	})
	mux.HandleFunc("GET /cancelled", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, cancelled.Load())
	})
	fmt.Printf("service %s http %s grpc %s\n", name, hl.Addr(), gl.Addr())
	_ = http.Serve(hl, mux)
	return 0
}
