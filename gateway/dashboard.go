package gateway

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed dashboard
var dashboardFS embed.FS

// dashboard serves the page at / : publish and play a stream, and the live list.
func dashboard() http.Handler {
	sub, _ := fs.Sub(dashboardFS, "dashboard")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
