"""A Python app that routes through a topic exchange on Redis (``Queue('pdf', Exchange('media',
type='topic'), routing_key='media.#')``, sent with ``routing_key='media.pdf'``): an hlbot worker
holding such a message is SIGKILLed, and the survivor's visibility-timeout restore puts it back
in ``pdf`` — found through the regex kombu keeps in the binding — where it runs.

Before, hlbot's lookup compared routing keys literally: the message went back to a ``media.pdf``
list that no worker reads, and was never run.
"""

import os
import signal
import time

from kombu import Exchange, Queue

from .test_worker_interop import start_flagged_worker  # noqa: F401  (fixture)

GET_TIMEOUT = 40


def test_topic_routed_message_survives_its_worker(start_flagged_worker, celery_app,  # noqa: F811
                                                  redis_client, prefix):
    media = Exchange('media', type='topic')
    celery_app.conf.task_queues = [Queue('pdf', media, routing_key='media.#')]
    flags = ['--visibility-timeout', '2']
    first = start_flagged_worker(queues=['pdf'], global_args=flags, worker_args=['--acks-late'])
    # Celery declares the queue and its topic binding, then publishes to `media`.
    r = celery_app.send_task('hlbot.debug.sleep', args=[60], queue='pdf',
                             routing_key='media.pdf')
    assert redis_client.smembers(f'{prefix}_kombu.binding.media'), 'kombu bound nothing'
    deadline = time.monotonic() + GET_TIMEOUT
    while r.state != 'STARTED':
        assert time.monotonic() < deadline, first.output()[-2000:]
        time.sleep(0.1)
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    second = start_flagged_worker(queues=['pdf'], global_args=flags,
                                  worker_args=['--acks-late', '--shutdown-timeout', '0.5'])
    # Redelivered into `pdf` (the second worker is running it), never into `media.pdf`.
    while 'hlbot.debug.sleep' not in second.output().split('ready:', 1)[-1]:
        assert time.monotonic() < deadline, second.output()[-2000:]
        assert redis_client.llen(f'{prefix}media.pdf') == 0
        time.sleep(0.2)
    assert redis_client.llen(f'{prefix}media.pdf') == 0
