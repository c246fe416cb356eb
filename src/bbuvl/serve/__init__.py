"""`bbuvl serve`: a checkpoint behind an authenticated HTTP API with dynamic batching, and an inspector's page.

Modules, one idea each: `errors` (the JSON error shape), `auth` (hashed API keys), `guard` (the key on every
route, metrics and a log line per request), `bodies` (reading bodies within the limit), `images` (decoding
uploads safely), `batching` (the bounded queue and the worker that gathers requests into one forward pass),
`answering` (a photo from its body to its answer, within --timeout), `pixels` (the bound on waiting photos' own
pixels), `gone` (a client leaving while its photo waits), `engine` (a checkpoint's predictor), `fewshot` (re-scoring
boxes against a support set), `support_watch` (that set kept in step with its folder while serving), `openai` (the
chat-completions shape), `metrics` (Prometheus), `cors` (browser calls from other origins), `files` (the page's
files, Range and all), `app` (the routes), `server` (uvicorn, deadlines on slow clients and graceful shutdown).
docs/serving.md.
"""
