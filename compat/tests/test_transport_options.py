"""kombu's ``sep`` and ``priority_steps`` broker transport options, as Celery's docs suggest them
for Redis priorities (``priority_steps = list(range(10))``, ``sep = ':'``), set on a Python app
and in hlbot's ``[broker_transport_options]``: both name the same lists, so prioritised messages
run on hlbot in priority order, ``hlbot send --priority`` reaches a Python worker's list, and
pidbox bindings (whose members use ``sep``) still carry ``celery inspect`` to the hlbot worker.

Before, hlbot had kombu's defaults built in: the app's ``default:1`` … ``default:9`` lists were
never read, so every message with a priority above 0 waited forever.
"""

import json

from celery import Celery

from compat import app as compat_app

from .support import REDIS_URL
from .test_worker_interop import start_flagged_worker  # noqa: F401  (fixture)

STEPS = list(range(10))
OPTIONS = {'priority_steps': STEPS, 'sep': ':', 'queue_order_strategy': 'priority'}


def app_with_options(prefix) -> Celery:
    a = compat_app.make_app(broker=REDIS_URL, prefix=prefix)
    a.conf.broker_transport_options = {'global_keyprefix': prefix, **OPTIONS}
    return a


def config(tmp_path):
    p = tmp_path / 'hlbot.toml'
    p.write_text('[broker_transport_options]\npriority_steps = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n'
                 'sep = ":"\n')
    return p


def test_priority_lists_named_like_the_app(start_flagged_worker, redis_client, prefix, hlbot,  # noqa: F811
                                           tmp_path):
    app = app_with_options(prefix)
    cfg = config(tmp_path)
    sent = [(p, app.send_task('hlbot.debug.echo', args=[p], queue='default', priority=p))
            for p in [5, 9, 1, 0, 7]]
    lists = sorted(k.decode() for k in redis_client.keys(f'{prefix}default*'))
    assert lists == [f'{prefix}default'] + [f'{prefix}default:{p}' for p in [1, 5, 7, 9]]
    # Without the options, hlbot doctor names the lists it would never read.
    doc = hlbot('doctor', '--json', timeout=120)
    stray = [json.loads(line) for line in doc.stdout.splitlines()
             if '"priority lists"' in line]
    assert sorted(f['finding'].split('"')[1] for f in stray) == [
        f'{prefix}default:{p}' for p in [1, 5, 7, 9]], doc.stdout
    assert all(f['level'] == 'warn' for f in stray)
    doc = hlbot('--config', cfg, 'doctor', '--json', timeout=120)
    assert [json.loads(line)['level'] for line in doc.stdout.splitlines()
            if '"priority lists"' in line] == ['ok']
    shown = hlbot('--config', cfg, 'queues', '-Q', 'default', '--json', check=True)
    [row] = [json.loads(line) for line in shown.stdout.splitlines() if line.startswith('{')]
    assert row['waiting'] == 5, row

    # One task at a time, taken in kombu's order: priority 0 first (Redis: lower runs first).
    start_flagged_worker(concurrency=1, global_args=['--config', cfg],
                         worker_args=['--prefetch-multiplier', '1'])
    for _, r in sent:
        r.get(timeout=30)
    done = sorted(sent, key=lambda s: s[1]._get_task_meta()['date_done'])
    assert [p for p, _ in done] == [0, 1, 5, 7, 9]

    pong = app.control.inspect(timeout=2).ping()
    assert pong and all(v == {'ok': 'pong'} for v in pong.values()), pong

    # hlbot → the app's list for priority 4 (step 4 of ten), where a Python worker looks.
    tid = hlbot('--config', cfg, 'send', 'compat.add', '--args', '[1, 2]', '-Q', 'pdf',
                '--priority', '4', check=True).stdout.split()[0]
    [raw] = redis_client.lrange(f'{prefix}pdf:4', 0, -1)
    assert json.loads(raw)['headers']['id'] == tid
    app.close()
