"""The REST API's routes, one module per concern; :func:`app.api.create_app` includes
them all. Each route takes what it needs as dependencies (:mod:`app.deps`)."""
