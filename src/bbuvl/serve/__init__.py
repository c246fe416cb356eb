"""`bbuvl serve`: a checkpoint behind an authenticated HTTP API with dynamic batching, and an inspector's page.

Modules, one idea each: `errors` (the JSON error shape), `auth` (hashed API keys), `images` (decoding uploads
safely), `batching` (the bounded queue and the worker that gathers requests into one forward pass), `engine`
(a checkpoint's predictor and the optional few-shot re-scoring), `openai` (the chat-completions shape),
`metrics` (Prometheus), `app` (the routes), `server` (uvicorn and graceful shutdown). docs/serving.md.
"""
