// Starts Swagger UI for /docs (kept in a file: the page's CSP allows no inline script).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // The default sends the document to an online validator: not from a self-hosted server.
    validatorUrl: null,
  });
});
