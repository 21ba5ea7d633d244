"""The chaos drill behind scripts/chaos.sh (run it through that script, not directly).

Fault injection against hlbot workers on a private redis-server: worker SIGKILLs (busy and
idle), Redis SIGKILL + restart (AOF), maxmemory refusal, a READONLY phase, duplicate task ids,
poison messages, FLUSHALL with ETA tasks held, chords through repeated worker SIGKILLs, and a
redis-server paused (SIGSTOP) past the worker's response time-out, and a worker that dies holding
messages under a one-hour visibility timeout. Every scenario uses its own key prefix,
sends protocol-v2 messages straight into the queue lists (exactly what Celery's LPUSH puts
there), and at its end counts, per task id: a SUCCESS result, committed runs (the
`hlbot.runs.<id>` counter the worker INCRs with `--count-runs` in the transaction that stores
the SUCCESS and acks), and copies still held by Redis (queue lists, `unacked`,
`hlbot.inflight.*`). It prints one table and exits 1 when any row shows a loss, a task
committed twice, a leftover, a failure of a normal task, or a hang (every wait is bounded).

Visibility timeout: 5 s where a worker dies or Redis loses state (a, b, c, h, i), so the messages
a dead worker held come back within the scenario; 120 s where nothing dies (d, e, f, g, j), so a
message the live worker failed to ack shows up as "left in unacked" instead of being quietly
restored and run again; 3600 s in (k), where the dead worker's messages must come back
without it. Workers run with `--count-runs --shutdown-timeout 5` and the default
node name (a restarted worker has its predecessor's name, as under systemd); every scenario
ends with SIGTERM, which must stop the worker within 10 s.

Every process it starts (redis-server, workers) is recorded as a pid file in <work>/pids, so
the shell wrapper's trap can kill them even if this program is itself killed.
"""

import argparse
import base64
import json
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import redis

SEP = "\x06\x16"
QUEUE = "default"
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STATUS_RE = re.compile(rb'"status":\s*"([A-Z_]+)"')
FINAL = {"SUCCESS", "FAILURE", "REVOKED"}
# Poison that can only end in the dead-letter list (the others may also run: a worker may clamp
# a huge time limit, or accept a 20 MB message).
MUST_DEAD = {"not JSON", "20 MB not JSON", "headers null", "pickle"}
BIG = 1 << 20  # entries above this are only searched near their ends (ids, markers live there)
STOP_BOUND = 10.0  # seconds a worker may take to exit after SIGTERM ("--shutdown-timeout 5")

SCALES = {
    #            full    ci
    "a_tasks": (10000, 600),
    "b_kills": (300, 30),
    "c_tasks": (3000, 400),
    "c_kills": (4, 2),
    "d_tasks": (2000, 400),
    "e_tasks": (2000, 400),
    "f_ids": (200, 30),
    "g_normal": (20, 10),
    "h_eta": (25, 6),
    "i_chords": (3000, 400),
    "i_kills": (25, 8),
    "j_tasks": (3000, 400),
    "k_tasks": (400, 60),
    "k_eta": (50, 10),
}
K_RECLAIM = 3.0  # (k): --reclaim-after of both workers (the visibility timeout is an hour)
J_PAUSE = 40.0  # (j): longer than the worker's 30 s response time-out, at both scales


def log(*a):
    print(f"[chaos {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_id():
    return str(uuid.uuid4())


def envelope(task, args=(), kwargs=None, task_id=None, eta=None, timelimit=(None, None),
             headers_null=False, group=None, group_index=None, chord=None):
    """A kombu/Celery protocol-v2 envelope as `send_task` LPUSHes it; returns (id, bytes).
    With `group`, `group_index` and `chord` (the body signature) it is a chord header part."""
    task_id = task_id or new_id()
    body = [list(args), kwargs or {}, {"callbacks": None, "errbacks": None, "chain": None,
                                        "chord": chord}]
    headers = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": eta,
        "expires": None, "group": group, "group_index": group_index, "retries": 0,
        "timelimit": list(timelimit), "root_id": task_id, "parent_id": None,
        "argsrepr": "(...)", "kwargsrepr": "{}", "origin": "chaos@drill",
        "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None,
        "stamps": {},
    }
    env = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": None if headers_null else headers,
        "properties": {
            "correlation_id": task_id, "reply_to": new_id(), "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": new_id(),
        },
    }
    return task_id, json.dumps(env).encode()


def pickle_envelope():
    """A Celery message serialized with pickle (content-type application/x-python-serialize)."""
    task_id, raw = envelope("hlbot.debug.echo", ["pickled"])
    env = json.loads(raw)
    env["content-type"] = "application/x-python-serialize"
    env["content-encoding"] = "binary"
    env["body"] = base64.b64encode(pickle.dumps((("pickled",), {}, {}), protocol=2)).decode()
    return task_id, json.dumps(env).encode()


def uuids(raw):
    """Every uuid in a raw entry; of a big one only its first and last 64 KiB (a kombu
    envelope has its headers and properties after the body; the drill's markers lead)."""
    if len(raw) > BIG:
        return UUID_RE.findall(raw[:65536]) + UUID_RE.findall(raw[-65536:])
    return UUID_RE.findall(raw)


def eta_in(seconds):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


class Failed(Exception):
    """A scenario step exceeded its bound (a hang) or could not be set up."""


class Scenario:
    """Bookkeeping of one table row."""

    def __init__(self, drill, key, title, vt):
        self.drill, self.key, self.title, self.vt = drill, key, title, vt
        self.prefix = f"chaos-{key}-{uuid.uuid4().hex[:6]}:"
        self.expect = {}      # task id -> deliveries that must each run and commit once
        self.poison = {}      # marker id -> label: must end dead-lettered or with a final result
        self.problems = []    # failure reasons (each makes the row fail)
        self.notes = []       # informational
        self.workers = []     # every worker Popen of this scenario, in start order
        self.rss = None
        self.row = None
        self.leftover_seen = 0  # most entries seen left over when a wait gave up
        self.labels = {}        # task id -> name shown in the notes when it did not finish
        self.in_queue = set()   # ids with a copy in the queue lists (set by held())

    # --- sending -------------------------------------------------------------------------
    def push(self, raws):
        r = self.drill.r
        for i in range(0, len(raws), 500):
            p = r.pipeline(transaction=False)
            for raw in raws[i:i + 500]:
                p.lpush(self.prefix + QUEUE, raw)
            self.drill.call(p.execute)

    def send(self, task, args=(), n=1, deliveries=1, **kw):
        """Send n tasks (each as `deliveries` separate messages with the same id)."""
        raws, ids = [], []
        for _ in range(n):
            task_id, raw = envelope(task, args, **kw)
            copies = [raw] + [envelope(task, args, task_id=task_id, **kw)[1]
                              for _ in range(deliveries - 1)]
            raws.extend(copies)
            ids.append(task_id)
            self.expect[task_id] = self.expect.get(task_id, 0) + deliveries
        self.push(raws)
        return ids

    # --- workers -------------------------------------------------------------------------
    def worker(self, *extra, acks_late=True, wait_idle=False):
        base = self.drill.max_client_id() if wait_idle else 0
        args = [self.drill.bin, "--broker", self.drill.url, "--key-prefix", self.prefix,
                "--visibility-timeout", str(self.vt), "-l", os.environ.get("CHAOS_LOGLEVEL", "warn"), "worker", "-Q", QUEUE,
                "--count-runs", "--shutdown-timeout", "5", *extra]
        if acks_late:
            args.append("--acks-late")
        p = self.drill.spawn(args, f"{self.key}-worker{len(self.workers)}")
        self.workers.append(p)
        if wait_idle and not self.drill.wait_blocked(base, p, 15):
            raise Failed(f"worker {len(self.workers)} not idle in its blocking wait within 15 s")
        return p

    def kill(self, p):
        self.drill.kill(p, signal.SIGKILL)

    def stop(self, p):
        """SIGTERM; the worker must exit within STOP_BOUND (else: a hang, then SIGKILL)."""
        if p.poll() is not None:
            self.problems.append(f"worker exited by itself (rc {p.returncode})")
            self.drill.untrack(p)
            return
        rss = vmrss_mib(p.pid)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            self.problems.append(f"hang: SIGTERM did not stop the worker in {STOP_BOUND:.0f} s")
            self.drill.kill(p, signal.SIGKILL)
        self.drill.untrack(p)
        return rss

    # --- counting ------------------------------------------------------------------------
    def inflight_lists(self):
        """Every `<prefix>hlbot.inflight.*` list (per-worker in-flight lists, if the engine has
        them)."""
        r = self.drill.r
        keys = self.drill.call(lambda: list(r.scan_iter(self.prefix + "hlbot.inflight.*", 200)))
        return [k for k in keys if self.drill.call(r.type, k) == b"list"]

    def leftover(self):
        """Entries in `unacked` plus those of every in-flight list (cheap: no parsing)."""
        r = self.drill.r
        n = self.drill.call(r.hlen, self.prefix + "unacked")
        return n + sum(self.drill.call(r.llen, k) for k in self.inflight_lists())

    def held(self):
        """({known id: copies Redis still holds}, entries left over, messages queued).
        Also remembers which ids are still queued (`self.in_queue`)."""
        r = self.drill.r
        held, queued, self.in_queue = {}, 0, set()
        known = set(self.expect) | set(self.poison)

        def count(raws, queue=False):
            for raw in raws:
                for m in set(uuids(raw)):
                    if m.decode() in known:
                        held[m.decode()] = held.get(m.decode(), 0) + 1
                        if queue:
                            self.in_queue.add(m.decode())
            return len(raws)

        for step in ("", SEP + "3", SEP + "6", SEP + "9"):
            queued += count(self.drill.call(r.lrange, self.prefix + QUEUE + step, 0, -1), True)
        leftover = count(self.drill.call(r.hvals, self.prefix + "unacked"))
        for key in self.inflight_lists():
            leftover += count(self.drill.call(r.lrange, key, 0, -1))
        return held, leftover, queued

    def mget(self, name):
        ids = list(self.expect) + list(self.poison)
        out = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            vals = self.drill.call(self.drill.r.mget, [self.prefix + name + t for t in chunk])
            out.update(zip(chunk, vals))
        return out

    def statuses(self):
        out = {}
        for t, v in self.mget("celery-task-meta-").items():
            if v and len(v) > BIG:
                m = STATUS_RE.search(v)
                out[t] = m.group(1).decode() if m else "?"
                continue
            try:
                out[t] = json.loads(v)["status"] if v else None
            except (ValueError, KeyError, TypeError):
                out[t] = "?"
        return out

    def runs(self):
        return {t: int(v) if v else 0 for t, v in self.mget("hlbot.runs.").items()}

    def dead(self):
        found = set()
        for raw in self.drill.call(self.drill.r.lrange, self.prefix + "hlbot.dead", 0, -1):
            found.update(m.decode() for m in uuids(raw))
        return found

    def tally(self):
        st, runs = self.statuses(), self.runs()
        everything_done = self.poison == {} and all(
            st.get(t) == "SUCCESS" and runs[t] >= k for t, k in self.expect.items())
        if everything_done:
            held, leftover = {}, self.leftover()
        else:
            held, leftover, _ = self.held()
        t = {"tasks": 0, "succeeded": 0, "lost": 0, "twice": 0, "failed": 0, "stuck": 0,
             "leftover": leftover, "pending": 0, "unfinished": [], "stuck_queued": 0}
        for tid, k in self.expect.items():
            t["tasks"] += k
            ok = st.get(tid) == "SUCCESS"
            done = min(max(runs[tid], 1), k) if ok else 0
            t["succeeded"] += done
            t["twice"] += max(0, runs[tid] - k)
            missing = k - done
            if missing == 0:
                continue
            t["pending"] += missing
            if tid in self.labels:
                t["unfinished"].append(f"{self.labels[tid]} ({st.get(tid) or 'no result'})")
            if st.get(tid) in FINAL and not ok:
                t["failed"] += missing
                continue
            still = min(missing, held.get(tid, 0))
            t["stuck"] += still
            t["stuck_queued"] += still if tid in self.in_queue else 0
            t["lost"] += missing - still
        if self.poison:
            dead = self.dead()
            t["dead"] = []
            for tid, label in self.poison.items():
                t["tasks"] += 1
                if st.get(tid) == "SUCCESS":
                    t["succeeded"] += 1
                if tid in dead:
                    t["dead"].append(label)
                elif st.get(tid) in FINAL and label not in MUST_DEAD:
                    pass
                elif st.get(tid) in FINAL:
                    t["failed"] += 1
                    t["unfinished"].append(f"{label} ({st.get(tid)}, not dead-lettered)")
                else:
                    t["stuck" if held.get(tid) else "lost"] += 1
                    t["pending"] += 1
                    t["unfinished"].append(f"{label} ({st.get(tid) or 'no result'})")
        return t

    def wait_done(self, bound, what="every task to finish", note=True):
        """Poll until every delivery is accounted for and nothing is left over, or the bound."""
        end = time.monotonic() + bound
        t = None
        while time.monotonic() < end:
            t = self.tally()
            if t["pending"] == 0 and t["leftover"] == 0:
                return True
            time.sleep(0.25)
        if t:
            if note:
                self.notes.append(f"gave up waiting for {what} after {bound:.0f} s")
            self.leftover_seen = max(self.leftover_seen, t["leftover"])
        return False

    def wait_held(self, n, bound):
        """Until the queue is empty and n messages sit in unacked (held by the worker)."""
        end = time.monotonic() + bound
        while time.monotonic() < end:
            _, leftover, queued = self.held()
            if queued == 0 and leftover >= n:
                return True
            time.sleep(0.05)
        raise Failed(f"worker did not take the {n} ETA messages within {bound:.0f} s")

    def qlen(self):
        return self.drill.call(self.drill.r.llen, self.prefix + QUEUE)

    def wait_qlen_below(self, n, bound):
        end = time.monotonic() + bound
        while time.monotonic() < end:
            if self.qlen() < n:
                return
            time.sleep(0.002)
        raise Failed(f"queue did not drain below {n} within {bound:.0f} s")

    def finish(self, bound, note=True):
        """The common end: wait (bounded), read the live worker's RSS, SIGTERM it, count."""
        live = [p for p in self.workers if p.poll() is None]
        self.wait_done(bound, note=note)
        for p in live:
            rss = self.stop(p)
            if rss is not None:
                self.rss = rss
        self.wait_leftover(3)

    def wait_leftover(self, bound):
        end = time.monotonic() + bound
        while time.monotonic() < end and self.held()[1]:
            time.sleep(0.2)

    def dump_logs(self, why, tail=60):
        """The end of each worker's log on stderr, so a rare failure seen once (in CI, say) can
        be explained from the run's own output: the warnings say what was given back, restored
        or recorded again, and when."""
        for p in self.workers:
            try:
                with open(p.log_path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            log(f"{self.key}: {why}: last {min(tail, len(lines))} of {len(lines)} log lines of "
                f"{os.path.basename(p.log_path)}")
            for line in lines[-tail:]:
                log(f"  | {line}")

    def panics(self):
        n = 0
        for p in self.workers:
            try:
                with open(p.log_path, "rb") as f:
                    n += f.read().count(b"panicked")
            except OSError:
                pass
        return n

    def close(self, elapsed):
        t = self.tally()
        t["leftover"] = max(t["leftover"], self.leftover_seen)
        probs = list(self.problems)
        if t["lost"]:
            probs.append(f"{t['lost']} lost")
            self.dump_logs("lost")
        if t["twice"]:
            probs.append(f"{t['twice']} committed twice")
            self.dump_logs("committed twice")
        if t["leftover"]:
            probs.append(f"{t['leftover']} left in unacked/inflight")
        if t["stuck"]:
            probs.append(f"hang: {t['stuck']} unfinished at the bound ({t['stuck_queued']} of "
                         "them never taken from the queue, the rest held in unacked)")
        if t["failed"]:
            probs.append(f"{t['failed']} FAILURE results (or poison not dead-lettered)")
        notes = list(self.notes)
        if t["unfinished"]:
            notes.append("unfinished: " + ", ".join(t["unfinished"]))
        if t.get("dead") is not None:
            notes.append("dead-lettered: " + (", ".join(t["dead"]) or "none"))
        n = self.panics()
        if n:
            notes.append(f"{n} panic line(s) in worker logs")
        notes.append(f"{elapsed:.0f} s")
        self.row = {
            "scenario": self.title, "tasks": t["tasks"], "succeeded": t["succeeded"],
            "lost": t["lost"], "twice": t["twice"], "leftover": t["leftover"],
            "rss": "-" if self.rss is None else f"{self.rss:.1f}",
            "ok": not probs, "verdict": ("ok" if not probs else "FAIL: " + "; ".join(probs)),
            "notes": "; ".join(notes),
        }
        return self.row


def vmrss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Drill:
    def __init__(self, opts):
        self.bin = opts.bin
        self.work = opts.work
        self.ci = opts.scale == "ci"
        self.only = set(opts.only.split(",")) if opts.only else None
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.redis_proc = None
        self.procs = []
        os.makedirs(os.path.join(self.work, "pids"), exist_ok=True)
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.work, "redis"), exist_ok=True)
        self.r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30)

    def n(self, name):
        full, ci = SCALES[name]
        return ci if self.ci else full

    # --- processes -----------------------------------------------------------------------
    def spawn(self, args, name):
        path = os.path.join(self.work, "logs", f"{name}.log")
        with open(path, "ab") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        p.log_path = path
        open(os.path.join(self.work, "pids", str(p.pid)), "w").close()
        self.procs.append(p)
        return p

    def untrack(self, p):
        try:
            os.unlink(os.path.join(self.work, "pids", str(p.pid)))
        except OSError:
            pass

    def kill(self, p, sig):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        self.untrack(p)

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self.untrack(p)

    # --- redis ---------------------------------------------------------------------------
    def start_redis(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", os.path.join(self.work, "redis"), "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
                "--maxmemory", "0", "--loglevel", "warning"]
        self.redis_proc = self.spawn(args, "redis")
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                if self.r.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                time.sleep(0.05)
        raise Failed("redis-server did not answer within 20 s")

    def kill_redis(self):
        self.kill(self.redis_proc, signal.SIGKILL)

    def call(self, fn, *a, bound=30.0):
        """A Redis call that rides out restarts and loading (bounded)."""
        end = time.monotonic() + bound
        while True:
            try:
                return fn(*a)
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                if time.monotonic() > end:
                    raise Failed(f"Redis unreachable for {bound:.0f} s")
                time.sleep(0.05)

    def clients(self):
        return self.call(self.r.client_list)

    def max_client_id(self):
        return max(int(c["id"]) for c in self.clients())

    def wait_blocked(self, base, proc, bound):
        """Until a connection opened after client id `base` is blocked (the worker is idle)."""
        end = time.monotonic() + bound
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            if any(int(c["id"]) > base and "b" in c.get("flags", "") for c in self.clients()):
                return True
            time.sleep(0.003)
        return False

    def errorstats(self):
        return {k: v.get("count", 0) if isinstance(v, dict) else v
                for k, v in self.call(self.r.info, "errorstats").items()}

    # --- the scenarios -------------------------------------------------------------------
    def sc_a(self, sc):
        n = self.n("a_tasks")
        sc.send("hlbot.debug.sleep", [0.001], n=n)
        w = sc.worker("-c", "8", "--prefetch-multiplier", "4")
        for frac in (0.75, 0.5, 0.25):
            sc.wait_qlen_below(int(n * frac), 120)
            sc.kill(w)
            log(f"a: SIGKILLed the worker with {sc.qlen()} queued, {sc.leftover()} unacked")
            w = sc.worker("-c", "8", "--prefetch-multiplier", "4")
        sc.finish(120 if self.ci else 240)

    def sc_b(self, sc):
        k = self.n("b_kills")
        delays = []
        for i in range(k):
            w = sc.worker("-c", "2", wait_idle=True)
            sc.send("hlbot.debug.echo", [i])
            d = random.uniform(0, 0.003)
            delays.append(d)
            if d:
                time.sleep(d)
            sc.kill(w)
            if (i + 1) % 50 == 0:
                log(f"b: {i + 1} idle kills")
        sc.notes.append(f"kill delays {min(delays) * 1e3:.2f}-{max(delays) * 1e3:.2f} ms")
        sc.worker("-c", "2")
        sc.finish(45)

    def sc_c(self, sc):
        n = self.n("c_tasks")
        sc.send("hlbot.debug.sleep", [0.001], n=n)
        sc.worker("-c", "4", "--prefetch-multiplier", "4")
        kills = self.n("c_kills")
        for i in range(kills):
            sc.wait_qlen_below(int(n * (kills - i) / (kills + 1)), 120)
            self.kill_redis()
            log(f"c: SIGKILLed redis-server under load; restarting it in 1 s")
            time.sleep(1)
            self.start_redis()
            log(f"c: redis back ({sc.qlen()} queued after AOF reload)")
        sc.finish(90)

    def _refusal(self, sc, name, begin, end_):
        n = self.n(f"{name}_tasks")
        sleep = 0.01 if self.ci else 0.004
        sc.send("hlbot.debug.sleep", [sleep], n=n)
        sc.worker("-c", "2", "--prefetch-multiplier", "1")
        sc.wait_qlen_below(int(n * 0.9), 60)
        before = self.errorstats()
        begin()
        time.sleep(2)
        end_()
        after = self.errorstats()
        delta = {k.replace("errorstat_", ""): after[k] - before.get(k, 0) for k in after
                 if after[k] != before.get(k, 0)}
        sc.notes.append("errors Redis replied during the phase: "
                        + (", ".join(f"{k} {v}" for k, v in sorted(delta.items())) or "none"))
        if not delta:
            sc.problems.append("the phase provoked no Redis errors (scenario did not bite)")
        sc.finish(30)

    def sc_d(self, sc):
        def begin():
            used = int(self.call(self.r.info, "memory")["used_memory"])
            self.call(self.r.config_set, "maxmemory-policy", "noeviction")
            self.call(self.r.config_set, "maxmemory", str(used + 1024))
            log(f"d: maxmemory {used + 1024} (used {used}), noeviction, for 2 s")

        self._refusal(sc, "d", begin, lambda: self.call(self.r.config_set, "maxmemory", "0"))

    def sc_e(self, sc):
        sentinel = sc.prefix + "chaos.sentinel"
        self.call(self.r.set, sentinel, "kept")
        dbsize = self.call(self.r.dbsize)
        nowhere = free_port()  # nothing listens there: the replica never syncs, keeps its data

        def begin():
            self.call(self.r.replicaof, "127.0.0.1", str(nowhere))
            log(f"e: REPLICAOF 127.0.0.1 {nowhere} (no master there) for 2 s")

        self._refusal(sc, "e", begin, lambda: self.call(self.r.replicaof, "NO", "ONE"))
        if self.call(self.r.get, sentinel) != b"kept":
            sc.problems.append("the replica phase lost Redis data (sentinel key gone)")
        sc.notes.append(f"keys before/after {dbsize}/{self.call(self.r.dbsize)}")

    def sc_f(self, sc):
        # Half the ids on an early-ack worker (the default), half on an acks_late one; the
        # deliveries of one id are adjacent and take 0.1 s, so they run side by side.
        m = self.n("f_ids")
        for acks_late in (False, True):
            w = sc.worker("-c", "8", "--prefetch-multiplier", "2", acks_late=acks_late,
                          wait_idle=True)
            raws = []
            for i in range(m // 2):
                k = 2 + i % 2
                task_id = new_id()
                raws.extend(envelope("hlbot.debug.sleep", [0.1], task_id=task_id)[1]
                            for j in range(k))
                sc.expect[task_id] = k
            sc.push(raws)
            if acks_late:
                sc.finish(15)
            else:
                if not sc.wait_done(15, "the early-ack half"):
                    sc.problems.append("early-ack half did not settle within 15 s")
                sc.stop(w)

    def sc_g(self, sc):
        w = sc.worker("-c", "2", wait_idle=True)
        mark = {label: new_id() for label in ("not JSON", "20 MB not JSON", "headers null")}
        poison = [("not JSON", f"chaos {mark['not JSON']} {{ this is not json".encode()),
                  ("20 MB not JSON",
                   b"{" + mark["20 MB not JSON"].encode() + b"x" * (20 << 20))]
        tid, raw = envelope("hlbot.debug.echo", ["nulled"], headers_null=True)
        poison.append(("headers null", raw))
        mark["headers null"] = tid
        tid, raw = pickle_envelope()
        poison.append(("pickle", raw))
        mark["pickle"] = tid
        tid, raw = envelope("hlbot.debug.echo", ["x" * (20 << 20)])
        poison.append(("20 MB echo", raw))
        mark["20 MB echo"] = tid
        tid, raw = envelope("hlbot.debug.echo", ["limit"], timelimit=(1e20, None))
        poison.append(("timelimit 1e20", raw))
        mark["timelimit 1e20"] = tid
        for label, _ in poison:
            sc.poison[mark[label]] = label
        sc.push([raw for _, raw in poison])
        sc.send("hlbot.debug.echo", ["normal"], n=self.n("g_normal"))
        sc.wait_done(30, "the poison and normal tasks", note=False)

        def hlbot(*args):
            cmd = [self.bin, "--broker", self.url, "--key-prefix", sc.prefix, *args]
            try:
                p = subprocess.run(cmd, capture_output=True, timeout=20)
                return p.returncode
            except subprocess.TimeoutExpired:
                return "timeout"

        rc = hlbot("control", "rate_limit", "hlbot.debug.echo", "1e-30/s", "-t", "2")
        sc.notes.append(f"rate_limit 1e-30/s rc {rc}")
        sc.labels.update(dict.fromkeys(sc.send("hlbot.debug.echo", ["after rate limit"]),
                                       "echo after rate_limit"))
        if not sc.wait_done(15, note=False):
            sc.problems.append("a normal task did not run after rate_limit 1e-30/s")
        rc = hlbot("control", "rate_limit", "hlbot.debug.echo", "0", "-t", "2")
        sc.notes.append(f"reset rc {rc}")
        sc.labels.update(dict.fromkeys(sc.send("hlbot.debug.echo", ["after reset"]),
                                       "echo after reset"))
        if not sc.wait_done(15, note=False):
            sc.problems.append("a normal task did not run after the rate limit reset")
        if hlbot("inspect", "ping", "-t", "3") != 0:
            sc.problems.append("the worker did not answer inspect ping")
        sc.finish(5, note=False)
        if w.returncode not in (None, 0) and not any("SIGTERM" in p for p in sc.problems):
            sc.notes.append(f"worker exit code {w.returncode}")

    def _flush_eta(self, sc, restart):
        e = self.n("h_eta")
        w = sc.worker("-c", "2", wait_idle=True)
        sc.send("hlbot.debug.echo", ["eta"], n=e, eta=eta_in(5))
        sc.wait_held(e, 4)
        self.call(self.r.flushall)
        log(f"{sc.key}: FLUSHALL with {e} ETA tasks held")
        if restart:
            sc.stop(w)
            sc.worker("-c", "2")
        sc.finish(30)

    def sc_h1(self, sc):
        self._flush_eta(sc, restart=False)

    def sc_h2(self, sc):
        self._flush_eta(sc, restart=True)

    def sc_i(self, sc):
        # Chords of two acks_late parts; the worker is SIGKILLed every 0.15-0.4 s while chords
        # complete and restarted at once. A kill between the step that completes a chord and the
        # batch that sends its body leaves the body to the next worker (pending record): every
        # part and every body must commit exactly once.
        n = self.n("i_chords")
        raws = []
        p = self.r.pipeline(transaction=False)
        for k in range(n):
            gid, body_id = new_id(), new_id()
            body = {"task": "hlbot.debug.echo", "args": [k], "kwargs": {},
                    "options": {"task_id": body_id}, "subtask_type": None, "immutable": False}
            p.set(f"{sc.prefix}celery-taskset-meta-{gid}.s", 2)
            for idx in range(2):
                tid, raw = envelope("hlbot.debug.sleep", [0.01], group=gid, group_index=idx,
                                    chord=body)
                raws.append(raw)
                sc.expect[tid] = 1
            sc.expect[body_id] = 1
            sc.labels[body_id] = f"chord body {k}"
        self.call(p.execute)
        sc.push(raws)
        w = sc.worker("-c", "8", "--prefetch-multiplier", "4")
        kills = self.n("i_kills")
        for _ in range(kills):
            time.sleep(random.uniform(0.15, 0.4))
            sc.kill(w)
            w = sc.worker("-c", "8", "--prefetch-multiplier", "4")
        log(f"i: {kills} SIGKILLs done, {sc.qlen()} queued")
        sc.finish(120 if self.ci else 240)
        taken = 0
        for p_ in sc.workers:
            try:
                with open(p_.log_path, "rb") as f:
                    taken += f.read().count(b"died before it did")
            except OSError:
                pass
        sc.notes.append(f"{kills} kills; {taken} bod(ies) sent by the next worker after a kill "
                        "in the completing window")
        left = self.call(self.r.hlen, sc.prefix + "hlbot.chords.pending")
        if left:
            sc.problems.append(f"{left} chord body record(s) left pending")

    def sc_j(self, sc):
        n = self.n("j_tasks")
        sc.send("hlbot.debug.sleep", [0.002], n=n)
        sc.worker("-c", "2", "--prefetch-multiplier", "4")
        sc.wait_qlen_below(int(n * 0.7), 60)
        os.kill(self.redis_proc.pid, signal.SIGSTOP)
        log(f"j: redis-server SIGSTOPped under load for {J_PAUSE:.0f} s")
        time.sleep(J_PAUSE)
        os.kill(self.redis_proc.pid, signal.SIGCONT)
        log(f"j: redis-server continued ({sc.qlen()} queued)")
        resumed = time.monotonic()
        # Well inside the 120 s visibility timeout: a fetch Redis ran after the worker stopped
        # waiting for its reply would leave its messages unacked until then.
        if not sc.wait_done(45, "the tasks queued before the pause"):
            sc.problems.append("tasks queued before the pause not done 45 s after it ended")
            r = self.r
            for tag, raw in self.call(r.hgetall, sc.prefix + "unacked").items():
                ids = uuids(raw)
                score = self.call(r.zscore, sc.prefix + "unacked_index", tag)
                log(f"j: left in unacked: tag {tag.decode()} ids {ids[:2]} index score {score}"
                    f" (now {time.time():.3f})")
            for k in sc.inflight_lists():
                log(f"j: in-flight list {k}: {self.call(r.llen, k)} entries")
        sc.notes.append(f"first batch done {time.monotonic() - resumed:.1f} s after the pause")
        # Now paused while the worker is idle, blocked in its fetch; then one more batch.
        time.sleep(1)
        os.kill(self.redis_proc.pid, signal.SIGSTOP)
        log(f"j: redis-server SIGSTOPped with the worker idle for {J_PAUSE:.0f} s")
        time.sleep(J_PAUSE)
        os.kill(self.redis_proc.pid, signal.SIGCONT)
        started = time.monotonic()
        sc.send("hlbot.debug.echo", ["after"], n=20)
        sc.finish(60)
        sc.notes.append(f"last batch done {time.monotonic() - started:.1f} s after the second")

    def sc_k(self, sc):
        # A worker that dies holding messages, with a one-hour visibility timeout: its reserved
        # and running acks_late tasks and the ETA tasks it holds used to wait out that hour. The
        # survivor gives them back once the dead worker's liveness key stays gone for
        # --reclaim-after; every task must commit once, well inside the scenario's bound.
        n, e = self.n("k_tasks"), self.n("k_eta")
        # ETA messages first: the worker takes them first (they do not count against the
        # prefetch) and holds them all.
        sc.send("hlbot.debug.echo", ["eta"], n=e, eta=eta_in(4))
        sc.send("hlbot.debug.sleep", [0.5], n=n)
        reclaim = ("--reclaim-after", str(K_RECLAIM))
        w = sc.worker("-c", "4", "--prefetch-multiplier", "4", *reclaim)
        sc.wait_qlen_below(n + e - 20, 30)
        time.sleep(1.0)
        sc.kill(w)
        killed = time.monotonic()
        # What the dead worker held: ids with an entry in unacked (reserved, running, ETA).
        held = {m.decode() for raw in self.call(self.r.hvals, sc.prefix + "unacked")
                for m in set(uuids(raw)) if m.decode() in sc.expect}
        log(f"k: SIGKILLed the worker holding {len(held)} message(s), {sc.qlen()} queued")
        sc.worker("-c", "4", "--prefetch-multiplier", "4", *reclaim)
        back = None
        end = killed + 60
        while time.monotonic() < end:
            st = sc.statuses()
            if all(st.get(t) in FINAL for t in held):
                back = time.monotonic() - killed
                break
            time.sleep(0.25)
        sc.finish(90 if self.ci else 120)
        if back is None:
            sc.problems.append(f"the {len(held)} messages the dead worker held were not done "
                               "60 s after the kill")
        else:
            sc.notes.append(f"the {len(held)} it held done {back:.1f} s after the kill")

    def scenarios(self):
        return [
            ("a", f"(a) {self.n('a_tasks')} acks_late, 3 worker SIGKILLs", self.sc_a, 5),
            ("b", f"(b) {self.n('b_kills')} idle-worker kills 0-3 ms after a push", self.sc_b, 5),
            ("c", f"(c) redis-server SIGKILL + restart x{self.n('c_kills')} under load (AOF)",
             self.sc_c, 5),
            ("d", "(d) maxmemory noeviction refusal 2 s under load", self.sc_d, 120),
            ("e", "(e) READONLY 2 s (REPLICAOF nowhere, then NO ONE)", self.sc_e, 120),
            ("f", f"(f) duplicate ids: {self.n('f_ids')} ids x 2-3 deliveries", self.sc_f, 120),
            ("g", "(g) poison messages + rate_limit 1e-30/s", self.sc_g, 120),
            ("h1", "(h) FLUSHALL with ETA tasks held", self.sc_h1, 5),
            ("h2", "(h) FLUSHALL with ETA held, then warm restart", self.sc_h2, 5),
            ("i", f"(i) {self.n('i_chords')} chords, {self.n('i_kills')} worker SIGKILLs",
             self.sc_i, 5),
            ("j", f"(j) redis-server SIGSTOP {J_PAUSE:.0f} s under load, then idle", self.sc_j, 120),
            ("k", f"(k) worker SIGKILL holding {self.n('k_tasks')} + {self.n('k_eta')} ETA, "
             "visibility timeout 1 h", self.sc_k, 3600),
        ]

    def run(self):
        self.start_redis()
        rows = []
        for key, title, fn, vt in self.scenarios():
            if self.only and key not in self.only and key.rstrip("12") not in self.only:
                continue
            sc = Scenario(self, key, title, vt)
            log(f"--- {title} (prefix {sc.prefix}, visibility timeout {vt} s)")
            started = time.monotonic()
            try:
                fn(sc)
            except Failed as e:
                sc.problems.append(f"hang: {e}")
                log(f"{key}: {e}")
            for p in sc.workers:
                if p.poll() is None:
                    if sc.rss is None:
                        sc.rss = vmrss_mib(p.pid)
                    self.kill(p, signal.SIGKILL)
            try:
                row = sc.close(time.monotonic() - started)
            except Failed as e:
                row = {"scenario": title, "tasks": len(sc.expect), "succeeded": "?",
                       "lost": "?", "twice": "?", "leftover": "?", "rss": "-", "ok": False,
                       "verdict": f"FAIL: hang: {e}", "notes": ""}
            log(f"{key}: {row['verdict']} ({row['notes']})")
            rows.append(row)
        return rows


def print_table(rows, opts):
    head = ["scenario", "tasks", "succeeded", "lost", "committed twice", "left in unacked",
            "worker RSS after (MiB)", "verdict", "notes"]
    keys = ["scenario", "tasks", "succeeded", "lost", "twice", "leftover", "rss", "verdict",
            "notes"]
    print(f"hlbot chaos drill ({opts.scale} scale) against {opts.bin}")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    bad = [r["scenario"] for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} scenarios passed"
          + (f"; FAILED: {', '.join(bad)}" if bad else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--scale", choices=["full", "ci"], default="full")
    ap.add_argument("--only", default="")
    opts = ap.parse_args()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    drill = Drill(opts)
    try:
        rows = drill.run()
    finally:
        drill.cleanup()
    print_table(rows, opts)
    return 0 if rows and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
