"""Key prefixes: Python (kombu broker ``global_keyprefix`` + the result backend's own
``global_keyprefix``) and hlbot (``--key-prefix``) name every key and pub/sub channel the same
way, so one prefix isolates a whole deployment (and each test here)."""

import threading
import time
import uuid

import redis

from .support import REDIS_URL, last_json, lines_of, queue_key, raw_messages, scan_prefix


class Monitor:
    """``MONITOR`` on a side connection, collecting ``(client, args)`` of every command."""

    def __init__(self):
        self.client = redis.Redis.from_url(REDIS_URL)
        self.commands = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with self.client.monitor() as m:
                self._mon = m
                self._ready.set()
                for c in m.listen():
                    self.commands.append((c.get('client_address', ''), c['command']))
        except (redis.ConnectionError, OSError, ValueError, AttributeError):
            pass
        finally:
            self._ready.set()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        # MONITOR is one ordered stream: once a sentinel sent now shows up, every command run
        # before it has been collected too.
        sentinel = f'hlbot-compat-monitor-{uuid.uuid4().hex}'
        self.client.echo(sentinel)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(sentinel in c for _, c in self.commands):
            time.sleep(0.01)
        try:
            self._mon.connection.disconnect()
        except Exception:  # noqa: BLE001 - best effort: the thread is a daemon anyway
            pass
        self._thread.join(5)
        self.client.close()

    def mentioning(self, needle):
        return [c for _, c in self.commands if needle in c]


def test_result_channel_is_prefixed_like_the_key(worker, celery_app, hlbot, redis_client, prefix):
    """Python's backend SUBSCRIBEs to and PUBLISHes on ``<prefix>celery-task-meta-<id>``, the
    same name as the key, and so does hlbot (checked with MONITOR)."""
    with Monitor() as mon:
        r = celery_app.send_task('compat.add', (2, 2))
        assert r.get(timeout=30) == 4
        p = hlbot('result', r.id, '--wait', '--timeout', '10')
        assert (p.returncode, last_json(p.stdout)) == (0, 4)
        tid = lines_of(hlbot('send', 'compat.add', '--args', '[3, 3]', '--wait',
                             '--timeout', '30', check=True).stdout)[0]
    name = f'{prefix}celery-task-meta-'
    for task_id in (r.id, tid):
        key = name + task_id
        assert celery_app.backend.get_key_for_task(task_id).decode() == key
        cmds = mon.mentioning(task_id)
        verbs = {c.split(' ', 1)[0].strip('"').upper() for c in cmds}
        assert {'SETEX', 'PUBLISH', 'SUBSCRIBE'} <= verbs, cmds
        for c in cmds:
            verb = c.split(' ', 1)[0].strip('"').upper()
            if verb in ('SETEX', 'PUBLISH', 'SUBSCRIBE', 'GET', 'UNSUBSCRIBE'):
                assert c.split(' ')[1].strip('"') == key, c
            elif verb == 'LPUSH':
                assert c.split(' ')[1].strip('"') == queue_key(prefix, 'default'), c
        assert redis_client.get(key) is not None


def test_nothing_outside_the_prefix(worker, celery_app, hlbot, redis_client, prefix):
    """Every command that names one of this test's tasks touches only ``<prefix>*`` keys."""
    with Monitor() as mon:
        ids = [celery_app.send_task('compat.add', (1, 2)).id,
               celery_app.send_task('compat.add', (1, 2), queue='pdf', countdown=1).id,
               lines_of(hlbot('send', 'compat.add', '--args', '[1, 2]', check=True).stdout)[0],
               lines_of(hlbot('send', 'compat.fail', '--args', '["x"]', '-Q', 'llm',
                              '--priority', '9', check=True).stdout)[0]]
        for tid in ids:
            hlbot('result', tid, '--wait', '--timeout', '30')
    for tid in ids:
        cmds = mon.mentioning(tid)
        assert cmds, tid
        for c in cmds:
            verb, first = c.split(' ')[0].strip('"').upper(), c.split(' ')[1].strip('"')
            if verb in ('EVALSHA', 'EVAL'):
                n = int(c.split(' ')[2].strip('"'))
                keys = [k.strip('"') for k in c.split(' ')[3:3 + n]]
            else:
                keys = [first]
            for k in keys:
                assert k.startswith(prefix), f'{k!r} is outside {prefix!r}: {c[:200]}'
    assert all(k.decode().startswith(prefix) for k in scan_prefix(redis_client, prefix))


def test_prefix_without_separator(start_worker, make_prefix, make_celery, hlbot, redis_client):
    """Celery's result backend appends ``_`` to a ``global_keyprefix`` that does not end in one
    of ``:_-.`` (celery/backends/base.py ``_add_global_keyprefix``); kombu's broker prefix is
    used as given. hlbot must do the same to find results Python stored and vice versa."""
    p = make_prefix(sep='')
    assert p[-1] not in ':_-.'
    app = make_celery(p)
    # Broker keys: no separator added, on either side.
    tid = lines_of(hlbot('send', 'compat.add', '--args', '[4, 5]', prefix=p,
                         check=True).stdout)[0]
    assert [m.id for m in raw_messages(redis_client, p, 'default')] == [tid]
    start_worker(worker_prefix=p)
    # Result keys: Python writes `<p>_celery-task-meta-<id>`.
    assert app.AsyncResult(tid).get(timeout=30) == 9
    assert app.backend.get_key_for_task(tid).decode() == f'{p}_celery-task-meta-{tid}'
    assert redis_client.exists(f'{p}_celery-task-meta-{tid}')
    p2 = hlbot('result', tid, '--wait', '--timeout', '10', prefix=p)
    assert (p2.returncode, p2.stdout.strip()) == (0, '9'), (
        'hlbot did not find the result Python stored under '
        f'{p}_celery-task-meta-{tid}: exit {p2.returncode} {p2.stdout} {p2.stderr}')
