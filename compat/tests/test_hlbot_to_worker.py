"""hlbot → Python: tasks sent with ``hlbot send`` are run by a real Python Celery worker, and
``hlbot result`` reads what that worker stored (value on SUCCESS; exception type and message on
stderr with exit 1 on FAILURE/REVOKED)."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from compat.app import SEED_MODULE, SEED_OTHER_TASKS, SEED_ROUTES, route_for

from .support import TRICKY_ARGS, TRICKY_KWARGS, last_json, lines_of, parse_iso, strict_equal

WAIT = '30'


def send(hlbot, task, *opts):
    """`hlbot send` → the task id (its stdout's only line)."""
    p = hlbot('send', task, *opts, check=True)
    [tid] = lines_of(p.stdout)
    return tid


def result(hlbot, tid, *opts):
    return hlbot('result', tid, '--wait', '--timeout', WAIT, *opts)


def success(hlbot, tid):
    p = result(hlbot, tid)
    assert p.returncode == 0, f'exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}'
    return last_json(p.stdout)


def meta(hlbot, tid):
    p = result(hlbot, tid, '--meta')
    assert p.returncode == 0, p.stderr
    return last_json(p.stdout)


def test_add(worker, hlbot):
    tid = send(hlbot, 'compat.add', '--args', '[2, 3]')
    strict_equal(success(hlbot, tid), 5)
    m = meta(hlbot, tid)
    assert (m['status'], m['task_id'], m['result']) == ('SUCCESS', tid, 5)


def test_send_wait(worker, hlbot):
    p = hlbot('send', 'compat.add', '--args', '[20, 22]', '--wait', '--timeout', WAIT)
    assert p.returncode == 0, p.stderr
    lines = lines_of(p.stdout)
    assert len(lines) == 2, lines
    strict_equal(json.loads(lines[-1]), 42)


def test_args_kwargs_round_trip(worker, hlbot):
    """Unicode, nesting, floats and 64-bit ints go hlbot → Python → hlbot unchanged."""
    tid = send(hlbot, 'compat.echo', '--args', json.dumps(TRICKY_ARGS),
               '--kwargs', json.dumps(TRICKY_KWARGS))
    strict_equal(success(hlbot, tid), {'args': TRICKY_ARGS, 'kwargs': TRICKY_KWARGS})


def test_request_fields(worker, hlbot):
    """What the Python worker sees of a plain hlbot message."""
    tid = send(hlbot, 'compat.whoami', '--args', '["a"]', '--kwargs', '{"k": 1}')
    r = success(hlbot, tid)
    assert r['id'] == tid == r['root_id']
    assert r['parent_id'] is None
    assert r['retries'] == 0
    assert r['eta'] is None and r['expires'] is None
    assert r['timelimit'] in ([None, None], None)
    assert (r['args'], r['kwargs']) == (['a'], {'k': 1})
    assert (r['exchange'], r['routing_key']) == ('', 'default')
    assert r['priority'] == 0


def test_failure(worker, hlbot):
    tid = send(hlbot, 'compat.fail', '--args', '["bad thing"]')
    p = result(hlbot, tid)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.splitlines()[0] == 'FAILURE: ValueError: bad thing'
    assert 'Traceback' in p.stderr, 'the traceback Python stored is shown'
    m = meta(hlbot, tid)
    assert m['status'] == 'FAILURE'
    assert m['result'] == {'exc_type': 'ValueError', 'exc_message': ['bad thing'],
                           'exc_module': 'builtins'}


def test_failure_custom_exception(worker, hlbot):
    tid = send(hlbot, 'compat.fail_custom', '--kwargs', '{"a": "first", "b": 2}')
    p = result(hlbot, tid)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.splitlines()[0] == 'FAILURE: CompatError: first, 2'
    assert meta(hlbot, tid)['result'] == {'exc_type': 'CompatError', 'exc_message': ['first', 2],
                                          'exc_module': 'compat.app'}


def test_send_wait_failure(worker, hlbot):
    p = hlbot('send', 'compat.fail', '--args', '["über bad"]', '--wait', '--timeout', WAIT)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.splitlines()[0] == 'FAILURE: ValueError: über bad'


def test_unknown_task_fails(worker, hlbot):
    """A name no Python worker knows: Celery stores FAILURE NotRegistered; hlbot shows it."""
    tid = send(hlbot, 'compat.no_such_task')
    p = result(hlbot, tid)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.splitlines()[0] == 'FAILURE: NotRegistered: compat.no_such_task'


def test_countdown(worker, hlbot):
    before = datetime.now(timezone.utc)
    tid = send(hlbot, 'compat.whoami', '--countdown', '2')
    after = datetime.now(timezone.utc)
    r = success(hlbot, tid)
    eta = parse_iso(r['eta'])
    assert before + timedelta(seconds=2) <= eta <= after + timedelta(seconds=2)
    done = parse_iso(meta(hlbot, tid)['date_done'])
    assert done >= eta, 'the worker held the task until its eta'


def test_eta(worker, hlbot):
    eta = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    tid = send(hlbot, 'compat.whoami', '--eta', eta.isoformat())
    r = success(hlbot, tid)
    assert parse_iso(r['eta']) == eta
    assert parse_iso(meta(hlbot, tid)['date_done']) >= eta


@pytest.mark.parametrize('priority', [0, 4, 7, 9])
def test_priority(worker, hlbot, priority):
    tid = send(hlbot, 'compat.whoami', '--priority', str(priority))
    assert success(hlbot, tid)['priority'] == priority


def test_explicit_queue(worker, hlbot):
    tid = send(hlbot, 'compat.whoami', '-Q', 'pdf')
    assert success(hlbot, tid)['routing_key'] == 'pdf'


def test_expires_in_future(worker, hlbot):
    before = datetime.now(timezone.utc)
    tid = send(hlbot, 'compat.whoami', '--expires', '60')
    after = datetime.now(timezone.utc)
    r = success(hlbot, tid)
    exp = parse_iso(r['expires'])
    assert before + timedelta(seconds=60) <= exp <= after + timedelta(seconds=60)


def test_expired_is_revoked(worker, hlbot):
    """Expires before its countdown: Celery revokes it as expired; hlbot reports REVOKED."""
    tid = send(hlbot, 'compat.whoami', '--countdown', '3', '--expires', '1')
    p = result(hlbot, tid)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.splitlines()[0] == 'REVOKED: TaskRevokedError: expired'


def test_custom_task_id(worker, hlbot):
    tid = send(hlbot, 'compat.add', '--args', '[1, 1]', '--task-id', 'compat-fixed-id-1')
    assert tid == 'compat-fixed-id-1'
    strict_equal(success(hlbot, tid), 2)


@pytest.mark.parametrize('short', list(SEED_ROUTES) + SEED_OTHER_TASKS)
def test_seed_tasks_routed(start_worker, hlbot, short):
    """A seed task sent by its full name reaches the queue the seed routes it to; a worker
    consuming only that queue runs it."""
    name = SEED_MODULE + short
    start_worker(queues=[route_for(name)])
    tid = send(hlbot, name, '--args', '["https://example.invalid/x"]', '--kwargs', '{"n": 1}')
    r = success(hlbot, tid)
    assert r == {'task': name, 'queue': route_for(name),
                 'args': ['https://example.invalid/x'], 'kwargs': {'n': 1}}


def test_result_not_ready(hlbot):
    """No worker: `result` says PENDING and exits 3; `--wait` times out with exit 3."""
    tid = send(hlbot, 'compat.add', '--args', '[1, 2]')
    p = hlbot('result', tid)
    assert (p.returncode, lines_of(p.stdout)) == (3, ['PENDING'])
    p = hlbot('result', tid, '--wait', '--timeout', '0.5')
    assert p.returncode == 3, (p.stdout, p.stderr)
