"""The tiny Celery app hlbot's interop tests talk to: the seed's task names and routes plus a few
test tasks. Owns nothing else; fixtures live in ``tests/conftest.py``.

Configured from the environment so ``celery -A compat.app worker`` can be pointed at a test's
private key prefix:

* ``HLBOT_COMPAT_BROKER``  broker and result backend URL (default ``redis://127.0.0.1:6379/0``)
* ``HLBOT_COMPAT_PREFIX``  ``global_keyprefix`` for the broker *and* the result backend
  (default empty)
* ``HLBOT_COMPAT_BACKEND`` result backend URL when it differs from the broker (an ``amqp://``
  broker: tests/test_amqp.py)
* ``HLBOT_COMPAT_RESULT_COMPRESSION`` ``result_compression`` (default none)
* ``HLBOT_COMPAT_SERIALIZER`` ``task_serializer``, ``result_serializer`` and the only accepted
  content (default ``json``; tests/test_serializers.py)

Tests build their own client apps with :func:`make_app` (one per key prefix).
"""

import os

from celery import Celery
from kombu import Exchange, Queue

DEFAULT_BROKER = 'redis://127.0.0.1:6379/0'


def SERIALIZER():  # noqa: N802  (a setting, read when an app is made)
    return os.environ.get('HLBOT_COMPAT_SERIALIZER') or 'json'

#: The seed's module for its tasks; hlbot routes both ``name`` and ``SEED_MODULE + name``.
SEED_MODULE = 'app.workers.tasks.'

#: The seed's routes (same table as crates/engine/src/route.rs); anything else → ``default``.
SEED_ROUTES = {
    'process_youtube_video': 'youtube',
    'process_youtube_playlist': 'youtube',
    # hlbot's addition (a local video or audio file), routed with the YouTube work.
    'process_video_file': 'youtube',
    'process_pdf_document': 'pdf',
    'extract_trading_strategy': 'llm',
    'analyze_chart_image': 'llm',
}

#: Seed task names without a route of their own (they go to ``default``).
SEED_OTHER_TASKS = ['cleanup_pdf_cache']

DEFAULT_QUEUE = 'default'
#: Every queue the seed uses (plus Celery's own default name, which hlbot also knows).
QUEUES = ['default', 'youtube', 'pdf', 'llm', 'celery']


def route_for(name):
    """The queue hlbot's default router picks for task ``name``."""
    short = name[len(SEED_MODULE):] if name.startswith(SEED_MODULE) else name
    return SEED_ROUTES.get(name) or SEED_ROUTES.get(short) or DEFAULT_QUEUE


def _router(name, args, kwargs, options, task=None, **kw):
    return {'queue': route_for(name)}


class CompatError(Exception):
    """A custom exception with two constructor arguments (like the captures' ``MyError``)."""

    def __init__(self, a, b):
        super().__init__(a, b)
        self.a = a
        self.b = b


def make_app(broker=None, prefix=None, name='compat', backend=None):
    """A Celery app on ``broker`` whose broker keys and result keys carry ``prefix``. With an
    ``amqp://`` broker the results go to ``backend`` (Redis; the prefix applies to it only)."""
    broker = broker or os.environ.get('HLBOT_COMPAT_BROKER') or DEFAULT_BROKER
    backend = backend or os.environ.get('HLBOT_COMPAT_BACKEND') or broker
    prefix = os.environ.get('HLBOT_COMPAT_PREFIX', '') if prefix is None else prefix
    app = Celery(name, broker=broker, backend=backend, set_as_current=False)
    transport = {'global_keyprefix': prefix} if prefix else {}
    on_amqp = broker.startswith(('amqp://', 'amqps://', 'pyamqp://'))
    app.conf.update(
        broker_transport_options={} if on_amqp else dict(transport),
        result_backend_transport_options=dict(transport),
        task_queues=[Queue(q, Exchange(q, type='direct'), routing_key=q) for q in QUEUES],
        task_default_queue=DEFAULT_QUEUE,
        task_routes=(_router,),
        task_serializer=SERIALIZER(),
        result_serializer=SERIALIZER(),
        accept_content=[SERIALIZER()],
        result_accept_content=[SERIALIZER()],
        result_expires=3600,
        # Tests look at single messages; a worker must not hoard the ones it does not run yet.
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone='UTC',
        # Celery 5.7's compressed results (tests/test_compression.py).
        result_compression=os.environ.get('HLBOT_COMPAT_RESULT_COMPRESSION') or None,
    )
    _register(app)
    return app


# Task bodies are plain module-level functions registered on every app `make_app` builds (one
# callable per name, so Celery does not warn about duplicate registrations).

def add(x, y):
    return x + y


def echo(*args, **kwargs):
    return {'args': list(args), 'kwargs': kwargs}


def fail(message):
    raise ValueError(message)


def fail_custom(a, b):
    raise CompatError(a, b)


def whoami(self, *args, **kwargs):
    """What the worker saw of the message: the request fields hlbot sets."""
    r = self.request
    info = r.delivery_info or {}
    return {
        'id': r.id, 'args': list(args), 'kwargs': kwargs, 'eta': r.eta,
        'expires': r.expires, 'retries': r.retries, 'timelimit': r.timelimit,
        'root_id': r.root_id, 'parent_id': r.parent_id,
        'priority': info.get('priority'), 'routing_key': info.get('routing_key'),
        'exchange': info.get('exchange'), 'ignore_result': r.ignore_result,
    }


def seed_stub(self, *args, **kwargs):
    """Stands in for every seed task: says which task ran, from which queue, with what."""
    return {'task': self.name, 'queue': (self.request.delivery_info or {}).get('routing_key'),
            'args': list(args), 'kwargs': kwargs}


def _register(app):
    app.task(name='compat.add')(add)
    app.task(name='compat.echo')(echo)
    app.task(name='compat.fail')(fail)
    app.task(name='compat.fail_custom')(fail_custom)
    app.task(name='compat.whoami', bind=True)(whoami)
    for short in list(SEED_ROUTES) + SEED_OTHER_TASKS:
        app.task(name=SEED_MODULE + short, bind=True)(seed_stub)


#: The app ``celery -A compat.app worker`` runs.
app = make_app()
