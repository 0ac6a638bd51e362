// GET /docs: render /openapi.json with the bundled Swagger UI.
// Paths are taken relative to this page so that API Gateway's stage prefix
// (https://<api>/prod/docs) is kept, and "Try it out" calls this deployment.
(function () {
  "use strict";
  var base = window.location.pathname.replace(/\/docs\/?$/, "");
  var root = document.getElementById("swagger-ui");
  fetch(base + "/openapi.json", { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("GET " + base + "/openapi.json answered " + response.status);
      }
      return response.json();
    })
    .then(function (spec) {
      spec.servers = [{ url: window.location.origin + base, description: "This deployment" }];
      window.ui = SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        deepLinking: true,
        // No call to the public validator service: the page works offline.
        validatorUrl: null,
        displayRequestDuration: true,
        defaultModelsExpandDepth: 0,
        docExpansion: "list",
        filter: true,
        persistAuthorization: false,
      });
    })
    .catch(function (error) {
      root.textContent = "The API description could not be loaded: " + error.message;
      console.error(error);
    });
})();
