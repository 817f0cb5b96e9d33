"""The web dashboard: static files shipped in the package, served by genmill itself (no CDN at run time).

`routes.router` serves `/` (a redirect) and `/dashboard/...`; the pages call the public API with the user's key
(docs/dashboard.md says how the key is held and why).
"""
