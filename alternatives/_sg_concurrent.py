"""The concurrent schedule of :class:`alternatives.SyntheticGradientTrainer`:
the layers of an MLP split into groups at the decoupled layers, one Python
thread per group, each calling GIL-free Numba kernels
(:mod:`alternatives._sg_concurrent_kernels`), activations flowing up and module targets
flowing down through bounded queues.

Group g (0-based) holds layers cut_{g-1}+1 .. cut_g, cut_g the g-th decoupled
layer (cut_{-1} = 0, the top group ends at L). A lower group owns the module
at its top layer. With ``staleness`` d >= 0 a lower group's batch t runs:

1. forward of its layers on batch t (input gathered from X, or taken from
   the group below), output sent up, module prediction P_t (module as it is);
2. when t >= d: wait for the target of batch t - d from the group above and
   update the module on batch t - d (inputs stored, prediction recomputed
   with the module's current parameters);
3. backward of its layers from P_t, the gradient at its input sent down
   (the bootstrapped target of the module below), update of its layers.

The top group runs forward, loss, backward, input gradient and update of
each batch as soon as the group below delivers it. At the end of an epoch
the lower groups finish the module updates still owed (the last d batches).

Every group's computation depends only on the sequence of messages it
receives, and those arrive in batch order, so a run is deterministic and
equal to :func:`run_epoch` with ``threaded=False`` (the same steps
interleaved in one thread). With d = 0 the schedule is the locked one: every
quantity equals the locked step's. Each thread works on private copies of
its layers, module and their optimizer state; they are written back at the
end of an epoch only when every update of the epoch was finite, so a
diverging epoch leaves the model and modules as they were after the
previous one.
"""
import queue
import threading

import numpy as np

from fastbp.kernels import codes
from fastbp.kernels.epochs import EpochData
from fastbp.kernels.optim import T
from fastbp.models import mlp_workspace_size

from . import _sg_concurrent_kernels as CK
from . import _sg_kernels as K

_POLL = 0.05


class _Abort(Exception):
    pass


class Group:
    """One layer group's private buffers (grown with the batch capacity)."""

    def __init__(self, trainer, index, first, last, module):
        m = trainer.model
        sizes = m.sizes
        layout = m.layout
        L = m.n_layers
        self.index = index
        self.first, self.last = first, last          # layers first..last (1-based)
        self.module = module                         # module index or None (top group)
        self.top = module is None
        self.bottom = first == 1
        Lg = last - first + 1
        acts = [int(layout[L + 1 + l]) for l in range(first, last + 1)]
        self.layout = np.array([Lg] + sizes[first - 1:last + 1] + acts, dtype=np.int64)
        self.w0 = sum(sizes[j - 1] * sizes[j] for j in range(1, first))
        self.w1 = self.w0 + sum(sizes[j - 1] * sizes[j] for j in range(first, last + 1))
        self.b0 = m.n_weights + sum(sizes[1:first])
        self.b1 = self.b0 + sum(sizes[first:last + 1])
        dt = m.dtype
        size = (self.w1 - self.w0) + (self.b1 - self.b0)
        self.p = np.zeros(size, dt)
        self.g = np.zeros(size, dt)
        self.s = np.zeros((trainer.optimizer.state.shape[0], size), dt)
        self.h = np.zeros(6, np.float64)
        self.train = trainer.train_hyper.copy()
        self.n_out = sizes[last]
        self.n_in = sizes[first - 1]
        if not self.top:
            row = trainer._sgl.table[module]
            self.m0 = int(row[K.PARAM])
            self.m1 = self.m0 + int(row[K.SIZE])
            msize = self.m1 - self.m0
            self.mp = np.zeros(msize, dt)
            self.mg = np.zeros(msize, dt)
            self.ms = np.zeros((trainer.sg_optimizer.state.shape[0], msize), dt)
            self.mh = np.zeros(6, np.float64)
            self.mtrain = np.zeros(3, np.float64)
        self.capacity = 0
        self.uses_labels = None

    def grow(self, trainer, rows):
        if rows <= self.capacity and trainer._uses_labels == self.uses_labels:
            return
        self.uses_labels = trainer._uses_labels
        m = trainer.model
        dt = m.dtype
        sizes = list(self.layout[1:self.layout[0] + 2])
        self.ws = np.zeros(mlp_workspace_size(sizes, rows), dt)
        k = m.n_outputs
        if trainer._uses_labels:
            self.lb = np.zeros(rows, np.int64)
            self.tb = np.zeros((0, 0), dt)
        else:
            self.lb = np.zeros(0, np.int64)
            self.tb = np.zeros((rows, k), dt)
        self.xb = np.zeros(rows * self.n_in if self.bottom else 0, dt)
        hid = max(trainer.sg_hidden, 1)
        self.pbuf = np.zeros(rows * self.n_out, dt)
        self.qbuf = np.zeros(rows * self.n_out, dt)
        self.rbuf = np.zeros(rows * self.n_out, dt)
        self.zbuf = np.zeros(rows * hid, dt)
        self.dzbuf = np.zeros(rows * hid, dt)
        self.capacity = rows

    def load(self, trainer):
        """Copy the group's layers, module and optimizer state in from the trainer."""
        fp = trainer.model.flat_params
        nw = self.w1 - self.w0
        self.p[:nw] = fp[self.w0:self.w1]
        self.p[nw:] = fp[self.b0:self.b1]
        st = trainer.optimizer.state
        self.s[:, :nw] = st[:, self.w0:self.w1]
        self.s[:, nw:] = st[:, self.b0:self.b1]
        self.h[:] = trainer.optimizer.hyper
        self.train[:] = trainer.train_hyper
        if not self.top:
            self.mp[:] = trainer.sg_params[self.m0:self.m1]
            self.ms[:] = trainer.sg_optimizer.state[:, self.m0:self.m1]
            self.mh[:] = trainer.sg_optimizer.hyper

    def store(self, trainer):
        """Write the group's layers, module and optimizer state back."""
        fp = trainer.model.flat_params
        nw = self.w1 - self.w0
        fp[self.w0:self.w1] = self.p[:nw]
        fp[self.b0:self.b1] = self.p[nw:]
        st = trainer.optimizer.state
        st[:, self.w0:self.w1] = self.s[:, :nw]
        st[:, self.b0:self.b1] = self.s[:, nw:]
        if not self.top:
            trainer.sg_params[self.m0:self.m1] = self.mp
            trainer.sg_optimizer.state[:, self.m0:self.m1] = self.ms

    def kernel_args(self, trainer, X, labels, targets, order, blas, channels):
        """The group's ``parts`` for :func:`~alternatives._sg_concurrent_kernels.lower_work`
        (or ``top_work``) for one epoch: the fields of its EpochData, GroupArgs,
        ModuleArgs (lower groups) and Channels, each a plain tuple."""
        data = EpochData(X, labels, targets, order, self.xb, self.lb, self.tb)
        grp = CK.GroupArgs(self.p, self.g, self.s, self.h, self.train, self.ws, self.layout, blas)
        if self.top:
            return tuple(data), tuple(grp), tuple(channels)
        mod = CK.ModuleArgs(self.mp, self.mg, self.ms, self.mh, self.mtrain, int(self.n_out),
                            int(trainer.sg_hidden), int(trainer._sgl.k), self.pbuf, self.qbuf,
                            self.zbuf, self.dzbuf, self.rbuf, blas)
        return tuple(data), tuple(grp), tuple(mod), tuple(channels)


class Pipeline:
    """Groups, channels and queues of one trainer (built once, grown with the
    batch capacity)."""

    def __init__(self, trainer):
        cuts = list(trainer.decoupled)
        L = trainer.model.n_layers
        bounds = [0] + cuts + [L]
        self.groups = [Group(trainer, g, bounds[g] + 1, bounds[g + 1],
                             g if g < len(cuts) else None) for g in range(len(bounds) - 1)]
        self.capacity = 0
        self.slots = 0

    def grow(self, trainer, rows, slots):
        for grp in self.groups:
            grp.grow(trainer, rows)
        if rows > self.capacity or slots != self.slots:
            dt = trainer.model.dtype
            # up[g]: outputs of group g for group g + 1; down[g]: targets of
            # group g's module, written by group g + 1; each `slots` blocks
            self.up = [np.zeros(slots * rows * g.n_out, dt) for g in self.groups[:-1]]
            self.down = [np.zeros(slots * rows * g.n_out, dt) for g in self.groups[:-1]]
            self.capacity = rows
            self.slots = slots

    def channels(self, g, batch_size):
        """Group g's :data:`~alternatives._sg_concurrent_kernels.Channels` for
        batches of ``batch_size`` rows."""
        grp = self.groups[g]
        dt = grp.p.dtype
        none = np.zeros(0, dt)
        src = grp.xb if grp.bottom else self.up[g - 1]
        grad = grp.xb if grp.bottom else self.down[g - 1]
        out = none if grp.top else self.up[g]
        targets = none if grp.top else self.down[g]
        return CK.Channels(src, out, targets, grad, int(batch_size), int(self.slots),
                           bool(grp.bottom))


def run_epoch(trainer, X, labels, targets, order, batch_size, staleness, threaded):
    """One epoch of the concurrent schedule (see the module docstring).

    Parameters
    ----------
    trainer : SyntheticGradientTrainer
    X, labels, targets : the prepared training set
    order : int64 (n,), the epoch's sample order (already shuffled)
    batch_size : int
    staleness : int >= 0
    threaded : bool
        One thread per group (True) or the same steps in this thread.

    Returns
    -------
    status : int
        OK or the failure code; on failure nothing was written back.
    stats : (objective summed over samples, number correct, updates, module
        loss summed over samples)
    """
    pipe = trainer._pipeline
    n = X.shape[0]
    nb = (n + batch_size - 1) // batch_size
    d = staleness
    S = d + 1
    pipe.grow(trainer, batch_size, S)
    groups = pipe.groups
    G = len(groups)
    for grp in groups:
        grp.load(trainer)
    blas = trainer._sg_blas(batch_size)
    args = [grp.kernel_args(trainer, X, labels, targets, order, blas, pipe.channels(g, batch_size))
            for g, grp in enumerate(groups)]
    acc = np.zeros((G, 4), np.float64)      # objective, correct, steps, module loss
    failures = []
    abort = threading.Event()
    if threaded:
        up_q = [queue.Queue(maxsize=S + 1) for _ in range(G - 1)]
        down_q = [queue.Queue(maxsize=S + 1) for _ in range(G - 1)]

    def get(q, expect):
        while True:
            try:
                got = q.get(timeout=_POLL)
            except queue.Empty:
                if abort.is_set():
                    raise _Abort from None
                continue
            if got != expect:  # pragma: no cover - a broken invariant, not a user error
                raise RuntimeError(f"pipeline out of order: got batch {got}, expected {expect}")
            return

    def lower(g, s, t, f):
        """Lower group g: module update on batch s, backward of t, forward of
        f (each skipped when negative); False on failure."""
        sg_sum, obj_sum, status = CK.lower_work(args[g], s, t, f)
        acc[g, 3] += sg_sum
        acc[g, 0] += obj_sum
        if status != codes.OK:
            failures.append((status, g))
            abort.set()
            return False
        return True

    def top(t):
        g = G - 1
        obj_sum, correct, status = CK.top_work(args[g], t)
        if status != codes.OK:
            failures.append((status, g))
            abort.set()
            return False
        acc[g, 0] += obj_sum
        acc[g, 1] += correct
        acc[g, 2] += 1
        return True

    if threaded:
        def lower_worker(g):
            # the bottom group, which waits for nothing before a forward,
            # runs batch t + 1's forward in the call that ends batch t
            bottom = g == 0
            try:
                for t in range(nb):
                    if t == 0 or not bottom:
                        if g > 0:
                            get(up_q[g - 1], t)
                        if abort.is_set() or not lower(g, -1, -1, t):
                            return
                        up_q[g].put(t)
                    s = t - d
                    if s >= 0:
                        get(down_q[g], s)
                    f = t + 1 if bottom and t + 1 < nb else -1
                    if not lower(g, s, t, f):
                        return
                    if g > 0:
                        down_q[g - 1].put(t)
                    if f >= 0:
                        up_q[g].put(f)
                for s in range(max(0, nb - d), nb):
                    get(down_q[g], s)
                    if not lower(g, s, -1, -1):
                        return
            except _Abort:
                return
            except BaseException as exc:  # surfaced by the caller
                failures.append((exc, g))
                abort.set()

        def top_worker():
            try:
                for t in range(nb):
                    get(up_q[G - 2], t)
                    if abort.is_set() or not top(t):
                        return
                    down_q[G - 2].put(t)
            except _Abort:
                return
            except BaseException as exc:
                failures.append((exc, G - 1))
                abort.set()

        threads = [threading.Thread(target=lower_worker, args=(g,), daemon=True)
                   for g in range(G - 1)]
        threads.append(threading.Thread(target=top_worker, daemon=True))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    else:
        ok = True
        for t in range(nb):
            for g in range(G - 1):
                lower(g, -1, -1, t)
            ok = top(t)
            for g in range(G - 2, -1, -1):
                ok = ok and lower(g, t - d, t, -1)
            if not ok:
                break
        for g in range(G - 1):
            for s in range(max(0, nb - d), nb):
                ok = ok and lower(g, s, -1, -1)
    for f in failures:
        if isinstance(f[0], BaseException):
            raise f[0]
    total = (acc[:, 0].sum(), acc[G - 1, 1], acc[G - 1, 2], acc[:, 3].sum())
    if failures:
        return failures[0][0], total
    for grp in groups:
        grp.store(trainer)
    trainer.optimizer.hyper[T] = groups[-1].h[T]
    trainer.sg_optimizer.hyper[T] = groups[0].mh[T]
    return codes.OK, total
