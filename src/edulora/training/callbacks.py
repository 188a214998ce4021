"""Trainer callbacks: metrics.jsonl, a checkpoint on Ctrl-C / SIGTERM, memory returned after evaluations;
and the full-disk handling around a run."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import shutil
import signal
import sys
import threading

import torch
from transformers import TrainerCallback

from ..errors import OUT_OF_SPACE, EduloraError
from ..modeling import device
from ..rundir import RunDir


class MetricsLog(TrainerCallback):
    """Appends every logged dict to metrics.jsonl (main process only)."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            row = {k: v for k, v in logs.items() if not (isinstance(v, float) and math.isnan(v))}
            self.run_dir.append_metrics({"step": state.global_step, "epoch": state.epoch, **row})


class GracefulStop(TrainerCallback):
    """On SIGINT / SIGTERM, finish the current optimizer step, save a checkpoint and stop.

    The HF Trainer saves nothing on Ctrl-C or on a scheduler's SIGTERM (preemption), losing up to
    ``save_steps`` of work. A second signal aborts at once.
    """

    def __init__(self):
        self.requested: int | None = None

    def _handle(self, signum, frame):
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum
        print(f"edulora: {signal.Signals(signum).name}: saving a checkpoint after this step "
              "(send it again to abort)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def installed(self):
        """Handlers only while training, restored even when training fails (signals need the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def on_step_end(self, args, state, control, **kwargs):
        if args.world_size > 1 and torch.distributed.is_initialized():
            # A signal may reach only some processes; stopping alone would hang the others' next all-reduce.
            flag = torch.tensor([float(self.requested is not None)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() and self.requested is None:
                self.requested = signal.SIGTERM
        if self.requested is not None:
            control.should_save = True
            control.should_training_stop = True


class ReleaseMemory(TrainerCallback):
    """Hand freed heap memory back to the OS after each evaluation.

    Evaluation allocates batches of other shapes than training, and glibc keeps the freed blocks
    in fragmented arenas, so a CPU run's resident memory creeps up. ``malloc_trim`` returns them.
    Not after every optimizer step: the next step then page-faults all its activations back in,
    which cost 15% of the training speed (see benchmarks/history/benchmarks-2026-12.md).
    """

    def __init__(self, trim):
        self.trim = trim

    @classmethod
    def if_useful(cls) -> ReleaseMemory | None:
        """None where the C library has no ``malloc_trim`` (macOS, musl) or on GPUs, whose memory it is not."""
        if device().type != "cpu":
            return None
        try:
            return cls(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            return None

    def on_evaluate(self, args, state, control, **kwargs):
        self.trim(0)


@contextlib.contextmanager
def out_of_space_is_a_user_error(run_dir: RunDir):
    """A full disk mid-run is the user's to fix, not a crash: say so, and how to continue.

    Checkpoints are complete only once their trainer_state.json exists, so the one being written
    when space ran out is skipped by resume; nothing earlier is lost.
    """
    try:
        yield
    except (OSError, RuntimeError) as err:
        if not is_out_of_space(err, run_dir):
            raise
        where = getattr(err, "filename", None) or run_dir
        raise EduloraError(f"{where}: no space left on device; free some space, then continue with: "
                           f"edulora train --resume {run_dir}") from None


def is_out_of_space(err: BaseException, run_dir: RunDir) -> bool:
    if isinstance(err, OSError) and err.errno in OUT_OF_SPACE:
        return True
    text = str(err)
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return True
    # torch.save reports only "file write failed"; a nearly empty disk tells what happened.
    if "write failed" in text:
        try:
            return shutil.disk_usage(run_dir.path).free < 64 * 2**20
        except OSError:
            return False
    return False
