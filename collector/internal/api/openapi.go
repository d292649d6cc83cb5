package api

import (
	_ "embed"
	"net/http"
)

// openapiJSON describes every public endpoint; TestOpenAPI_coversRoutes
// holds it in step with publicRoutes.
//
//go:embed openapi.json
var openapiJSON []byte

// openapi answers GET /api/openapi.json.
func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	a.openapiDoc.serve(w, r, "application/json", "public, max-age=3600")
}
