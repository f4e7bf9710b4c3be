package gateway

import (
	"embed"
	"io/fs"
	"net/http"
)

// The page, its script and the vendored chart library (uPlot, refreshed by
// dashboard/vendor/refresh.sh: go generate ./gateway).
//
//go:generate sh dashboard/vendor/refresh.sh
//go:embed dashboard/index.html dashboard/sluice.js dashboard/vendor/uPlot.iife.min.js dashboard/vendor/uPlot.min.css dashboard/vendor/LICENSE
var dashboardFS embed.FS

// dashboard serves the page at / : publish and play a stream, and the
// operator's view of the cluster, its streams, processes and policies, with
// live charts. The page reads the JSON API with its token.
func dashboard() http.Handler {
	sub, _ := fs.Sub(dashboardFS, "dashboard")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
