"""Celery's ``result_extended`` on an hlbot worker (``--result-extended`` / ``result_extended =
true``): Python's ``AsyncResult.name``, ``.args``, ``.kwargs``, ``.worker``, ``.retries`` and
``.queue`` read what hlbot stored, for a success and a failure — as a Celery worker
with ``result_extended = True`` stores them. Without the setting they stay None (Celery's default).

Before, hlbot had no such setting: an app that turned it on for its dashboards or audit trail got
None for every field from hlbot's workers.
"""

import pytest

from .test_worker_interop import start_flagged_worker  # noqa: F401  (fixture)

GET_TIMEOUT = 30


def test_extended_fields(start_flagged_worker, celery_app):  # noqa: F811
    w = start_flagged_worker(worker_args=['--result-extended'])
    celery_app.conf.result_extended = True
    ok = celery_app.send_task('hlbot.debug.echo', args=[1, 'two'], kwargs={'k': [3]})
    bad = celery_app.send_task('hlbot.debug.fail', args=['boom'], queue='default')
    assert ok.get(timeout=GET_TIMEOUT) == {'args': [1, 'two'], 'kwargs': {'k': [3]}}
    with pytest.raises(RuntimeError):
        bad.get(timeout=GET_TIMEOUT)
    for r, name, args, kwargs in [(ok, 'hlbot.debug.echo', [1, 'two'], {'k': [3]}),
                                  (bad, 'hlbot.debug.fail', ['boom'], {})]:
        meta = r.backend.get_task_meta(r.id, cache=False)
        assert (meta['name'], meta['args'], meta['kwargs'], meta['retries'], meta['queue']) == (
            name, args, kwargs, 0, 'default'), meta
        assert meta['worker'] and meta['worker'] in w.output(), meta
    assert (ok.name, ok.args, ok.kwargs, ok.queue) == ('hlbot.debug.echo', [1, 'two'],
                                                        {'k': [3]}, 'default')


def test_not_extended_by_default(start_flagged_worker, celery_app):  # noqa: F811
    start_flagged_worker()
    r = celery_app.send_task('hlbot.debug.echo', args=[1])
    r.get(timeout=GET_TIMEOUT)
    meta = r.backend.get_task_meta(r.id, cache=False)
    assert 'name' not in meta and 'args' not in meta, meta
