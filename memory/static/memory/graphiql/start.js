// Starts GraphiQL on /api/graphql/. The schema comes with the page (its introspection, made by the
// server), so GraphiQL never sends the introspection query, which the depth limit refuses.
// Requests go with the session cookie and the CSRF token of the page (a staff session needs both).
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var introspection = JSON.parse(document.getElementById("graphql-introspection").textContent);
  var endpoint = root.getAttribute("data-endpoint");
  var csrfToken = root.getAttribute("data-csrf-token");

  function fetcher(params) {
    return fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken},
      body: JSON.stringify(params),
    }).then(function (response) {
      return response.json();
    });
  }

  var defaultQuery = [
    "# GraphQL da memória do BeeCatalog. Ctrl+Enter executa.",
    "query Entradas {",
    "  entries(first: 10, ordering: HITS_DESC) {",
    "    totalCount",
    "    edges { cursor node { productId kind title status hitCount expiresAt } }",
    "    pageInfo { hasNextPage endCursor }",
    "  }",
    "}",
    "",
  ].join("\n");

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      schema: introspection,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true,
      shouldPersistHeaders: false,
    })
  );
})();
