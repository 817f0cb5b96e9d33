"""`genmill/echo`: a diagnostic model that returns its input, for exercising the API, workers and billing."""
