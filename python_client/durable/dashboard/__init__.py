"""``durable dashboard``: a server-rendered web UI of queues, tasks and workers, and ``/metrics``.

Optional: ``pip install 'durable[dashboard]'`` (Starlette, uvicorn, Jinja2, prometheus_client).
Modules: :mod:`.app` (the Starlette application), :mod:`.routes` (pages and actions),
:mod:`.queries` (what the pages read), :mod:`.charts` (inline SVG), :mod:`.metrics` (the
Prometheus collector), :mod:`.auth` (the token and CSRF checks), ``templates/`` (Jinja2).
"""
