"""Canvas shapes where the *worker* applies the next signature — a chain whose next step is a
group or a chord (Celery turns ``chain(a, group(b, c), d)`` into a chord step), a chord ending a
chain, a chord body that is a chain, a link that is a group — run on an hlbot worker exactly as on
a Celery worker, and Celery's builtin ``celery.map`` / ``celery.starmap`` (``sig.map(it)``,
``sig.starmap(it)``, ``sig.chunks(it, n)``) run there too: each shape is run once on a Python worker (``compat.echo``) and once on an hlbot
worker (``hlbot.debug.echo``, same return value) and the results must be equal.

Before, hlbot published such a step as a message for Celery's builtin ``celery.chord`` task, which
it does not have: the message was dead-lettered and the chain's result never came.
"""

import time
import uuid

import pytest
from celery import chain, chord, group
from celery.canvas import chunks, xmap, xstarmap
from celery.result import result_from_tuple

from .test_worker_interop import start_flagged_worker  # noqa: F401  (fixture)

GET_TIMEOUT = 30


def shapes(app, task):
    e = lambda *a: app.signature(task, args=a, queue='default')  # noqa: E731
    ids = [str(uuid.uuid4()) for _ in range(2)]

    def link_group():
        r = app.send_task(task, args=[5], queue='default',
                          link=group(e().set(task_id=ids[0]), e(7).set(task_id=ids[1])))
        return [r.get(timeout=GET_TIMEOUT)] + [app.AsyncResult(i).get(timeout=GET_TIMEOUT)
                                               for i in ids]

    return {
        'chain, group, task': lambda: chain(e(1), group(e(), e(2)), e()).apply_async(),
        'chain ending in a chord': lambda: chain(e(1), chord([e(), e()], e())).apply_async(),
        'chain, chord, two more': lambda: chain(e(1), chord([e(), e()], e()), e(),
                                                e(3)).apply_async(),
        'chord with a chain in its header after a step': lambda: chain(
            e(1), chord([e() | e(), e()], e())).apply_async(),
        'chain ending in a group': lambda: chain(e(1), group(e(), e())).apply_async(),
        'chord with a chain body': lambda: chord([e(1), e(2)], e() | e(9)).apply_async(),
        'chord with a group body': lambda: chord([e(1), e(2)], group(e(), e())).apply_async(),
        'link to a group': link_group,
        # Celery's builtins celery.map / celery.starmap (and chunks, a group of starmaps).
        'map': lambda: xmap(e(), [1, [2], {'k': 3}], app=app).apply_async(),
        'starmap': lambda: xstarmap(e(), [[1, 2], [], ['x']], app=app).apply_async(),
        'chunks': lambda: chunks(e(), [[i, i * i] for i in range(5)], 2, app=app).apply_async(),
        # celery.chunks returns its group's result tuple: the values behind it are compared.
        'chain ending in chunks': lambda: [result_from_tuple(chain(
            e(1), chunks(e(), [[1], [2], [3]], 2, app=app)).apply_async().get(
                timeout=GET_TIMEOUT), app).get(timeout=GET_TIMEOUT)],
    }


def run_all(app, task):
    out = {}
    for name, send in shapes(app, task).items():
        r = send()
        out[name] = r if isinstance(r, list) else r.get(timeout=GET_TIMEOUT)
    return out


def test_worker_applied_canvas_like_celery(start_worker, start_hlbot_worker, celery_app,
                                           make_prefix, make_celery):
    start_hlbot_worker()
    on_hlbot = run_all(celery_app, 'hlbot.debug.echo')
    py_prefix = make_prefix()
    start_worker(queues=['default'], worker_prefix=py_prefix)
    on_python = run_all(make_celery(py_prefix), 'compat.echo')
    for name in on_python:
        assert on_hlbot[name] == on_python[name], name


def test_a_step_without_a_queue_goes_where_its_name_routes(start_worker, start_hlbot_worker,
                                                          celery_app):
    """A chain sent from Python carries no queue for its later steps (Celery routes each when a
    worker applies it). The hlbot worker that ran step one sends step two to the queue its name
    routes to — the seed's ``process_pdf_document`` → ``pdf``, run there by the Python worker —
    as a Celery worker would. Before, hlbot sent it to its own queue (``default``), where it ran
    a PDF task with the wrong arguments."""
    start_worker(queues=['pdf'])
    start_hlbot_worker()
    pdf = 'app.workers.tasks.process_pdf_document'
    c = chain(celery_app.signature('hlbot.debug.echo', args=[1], queue='default'),
              celery_app.signature(pdf))
    assert 'queue' not in c.tasks[1].options
    got = c.apply_async().get(timeout=GET_TIMEOUT)
    assert (got['task'], got['queue']) == (pdf, 'pdf'), got


def test_a_steps_own_options_apply_when_hlbot_sends_it(start_hlbot_worker, celery_app):
    """``.set(countdown=…)`` / ``.set(time_limit=…)`` on a later chain step: Celery's worker
    applies them when it sends the step, so must hlbot. Before, hlbot dropped them: the step ran
    at once and without its time limit."""
    start_hlbot_worker()
    e = celery_app.signature('hlbot.debug.echo', queue='default')
    t0 = time.monotonic()
    got = chain(e.clone(args=(1,)), e.clone().set(countdown=2)).apply_async().get(
        timeout=GET_TIMEOUT)
    assert got == {'args': [{'args': [1], 'kwargs': {}}], 'kwargs': {}}
    assert time.monotonic() - t0 >= 2, 'countdown ignored'
    slow = celery_app.signature('hlbot.debug.sleep', args=(5,), immutable=True, queue='default')
    r = chain(e.clone(args=(1,)), slow.set(time_limit=1)).apply_async()
    with pytest.raises(Exception) as info:
        r.get(timeout=GET_TIMEOUT)
    assert type(info.value).__name__ == 'TimeLimitExceeded', repr(info.value)


def test_a_step_with_no_route_stays_on_its_senders_queue(start_hlbot_worker, celery_app):
    """An app on Celery's default queue (``celery``) with no routes: the next step of its chain
    goes back to ``celery``, where its workers are — not to a queue hlbot would pick."""
    start_hlbot_worker(queues=('celery',))
    e = celery_app.signature('hlbot.debug.echo')
    c = chain(e.clone(args=(1,)).set(queue='celery'), e.clone())
    assert c.apply_async().get(timeout=GET_TIMEOUT) == {
        'args': [{'args': [1], 'kwargs': {}}], 'kwargs': {}}


def test_a_step_with_no_route_goes_to_the_apps_default_queue(start_flagged_worker,  # noqa: F811
                                                            celery_app):
    """With ``--task-default-queue celery`` (the app's ``task_default_queue``), a step no route
    names goes there, as a Celery worker sends it: the worker on ``celery`` runs step two."""
    first = start_flagged_worker(global_args=['--task-default-queue', 'celery'])
    second = start_flagged_worker(queues=('celery',))
    e = celery_app.signature('hlbot.debug.echo')
    r = chain(e.clone(args=(1,)).set(queue='default'), e.clone()).apply_async()
    assert r.get(timeout=GET_TIMEOUT) == {'args': [{'args': [1], 'kwargs': {}}], 'kwargs': {}}
    assert r.id in second.output() and r.id not in first.output()
