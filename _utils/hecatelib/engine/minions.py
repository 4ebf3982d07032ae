"""How the engine reaches minions: Salt's LocalClient behind one small interface (the engine's ``call``
seam; tests give the engine their own)."""

import re
import time

import salt.client
import salt.utils.minions


class Minions:
    """``call(target, fun, *args, **kwargs) -> {minion: {"ok", "ret"}}`` over one LocalClient: the one way
    this runner reaches minions. ``target``: ``edge`` or ``controller`` (``hecate:deployment:targets``,
    overridden by ``tgt``/``controller``), or ``minion:<id>``. ``ok`` is False when the function failed or
    the minion did not answer within ``timeout`` (default ``hecate:deployment:stage_timeout``)."""

    def __init__(self, opts, tree, tgt=None, tgt_type=None, controller=None, timeout=None, say=None, force=False):
        self.opts = opts
        self.say = say or (lambda line: None)  # progress for the operator (the engine's say seam)
        # force: every state run skips Salt's refusal of a pillar with errors (state.apply force=True): a
        # rollback while the live pillar does not validate, whose state runs get the recorded tree instead
        self.state_kwargs = {"force": True} if force else {}
        targets = tree["deployment"]["targets"]
        self.roles = {
            "edge": (tgt, tgt_type or "glob") if tgt else (targets["edge"], targets["tgt_type"]),
            "controller": (controller, tgt_type or "glob") if controller else (targets["controller"], targets["tgt_type"]),
        }
        self.timeout = int(timeout or tree["deployment"]["stage_timeout"])
        self.client = salt.client.LocalClient(mopts=opts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _target(self, target):
        if target.startswith("minions:"):  # a batch of the fleet rollout
            return target[len("minions:") :], "list"
        return (target[len("minion:") :], "glob") if target.startswith("minion:") else self.roles[target]

    @staticmethod
    def _answers(answers):
        out = {}
        for minion, answer in (answers or {}).items():
            if not isinstance(answer, dict) or answer.get("failed") or "ret" not in answer:  # did not return in time
                out[minion] = {"ok": False, "ret": "no answer from the minion (down, or slower than the timeout)", "silent": True}
            else:
                out[minion] = {"ok": answer.get("retcode", 0) == 0, "ret": answer["ret"]}
        return out

    def __call__(self, target, fun, *args, **kwargs):
        tgt, tgt_type = self._target(target)
        return self._answers(
            self.client.cmd(tgt, fun, list(args), tgt_type=tgt_type, kwarg=kwargs or None, timeout=self.timeout, full_return=True)
        )

    def state_apply(self, target, sls, **kwargs):
        """``state.apply`` on ``target``. Salt refuses a state run while another one runs on the minion
        ("is running as PID"): a dry run of hecate.plan, status or a reconcile begun before the lock, an
        operator's highstate. A refused run applied nothing, so those minions are asked again once the
        other run ended, for up to :data:`BUSY_WAIT` seconds, instead of failing the stage."""
        kwargs = {**kwargs, **self.state_kwargs}
        answers = self(target, "state.apply", sls, **kwargs)
        deadline = time.monotonic() + BUSY_WAIT
        said = None
        while True:
            busy = sorted(minion for minion, answer in answers.items() if refused_as_busy(answer))
            if not busy or time.monotonic() > deadline:
                return answers
            if busy != said:
                self.say(f"{sls}: another state run is under way on {', '.join(busy)}; asking again when it ends (up to {BUSY_WAIT} s)")
                said = busy
            time.sleep(0.5)
            answers.update(self("minions:" + ",".join(busy), "state.apply", sls, **kwargs))

    def many(self, jobs):
        """Several jobs published at once, then gathered: one round trip for all of them.
        ``[(target, fun, args, kwargs)] -> [answers of each job]``. Each is a single-function job, never
        a compound one: Salt's ``saltutil.is_running`` (behind every state run's "is another state run
        running?" check) fails with a TypeError on a running job whose ``fun`` is a list, so any
        state.apply starting on that minion meanwhile, an operator's included, would fail."""
        self.client.event.subscribe("salt/job/")  # cache every job return until its turn to be read
        published = []
        for target, fun, args, kwargs in jobs:
            tgt, tgt_type = self._target(target)
            kwargs = {**kwargs, **self.state_kwargs} if fun == "state.apply" else kwargs
            pub = self.client.run_job(tgt, fun, list(args), tgt_type=tgt_type, kwarg=kwargs or None, timeout=self.timeout, listen=True)
            published.append((pub, tgt, tgt_type))
        out = []
        for pub, tgt, tgt_type in published:
            answers = {}
            if pub and pub.get("jid"):
                for found in self.client.get_cli_event_returns(pub["jid"], pub["minions"], self.timeout, tgt, tgt_type):
                    answers.update(found or {})
            out.append(self._answers(answers))
        return out

    def shared(self):
        """``minions:<ids>`` when the edge and controller targets match the very same minions (as the
        master's minion data cache has them, the list Salt waits for), so one job can carry both roles'
        work; else None."""
        matched = {
            tuple(sorted(salt.utils.minions.CkMinions(self.opts).check_minions(tgt, tgt_type).get("minions") or []))
            for tgt, tgt_type in self.roles.values()
        }
        ids = matched.pop() if len(matched) == 1 else ()
        return "minions:" + ",".join(ids) if ids else None

    def close(self):
        self.client.destroy()


BUSY_WAIT = 120  # seconds a stage waits for another state run on its minion (Minions.state_apply)
_BUSY = re.compile(r'The function "state\.\w+" is running as PID \d+')


def refused_as_busy(answer):
    """Salt's answer to a state run while another runs there: a list of "is running as PID" lines."""
    ret = answer["ret"]
    return not answer["ok"] and isinstance(ret, list) and bool(ret) and all(isinstance(line, str) and _BUSY.match(line) for line in ret)
