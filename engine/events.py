"""The typed records that cross from a job to a page: events, job results, the data-set record.

They stay plain dicts at run time (they are appended from a worker thread, read by the page, and
would cross a process boundary as they are), typed here as TypedDicts so that every field has one
written meaning. A Learner calls `on_event(kind, **fields)`; a job adds "kind" and "time".
"""
from __future__ import annotations

from typing import Literal, Optional, TypedDict, Union


class _Base(TypedDict, total=False):
    kind: str                 # the event's kind, one of EVENT_KINDS
    time: float               # time.time() when the job recorded it


# -- emitted by engine.training.Learner -----------------------------------------------------------

class FitStart(_Base):
    stage: str                # "train", "frozen" (head only) or "unfrozen"
    epochs: int
    total_steps: int
    lrs: list[float]          # peak learning rate per layer group, earliest first
    precision: str            # the arithmetic: "fp32", "bf16" or "fp16"


class BatchEvent(_Base):
    stage: str
    epoch: int                # 0-based, within the stage
    step: int                 # 1-based, within the stage
    lr: float                 # the head group's rate at this step
    loss: float               # this batch's loss
    smooth_loss: float        # debiased exponential moving average (beta 0.98), as fastai shows


class EpochEvent(_Base):
    stage: str
    epoch: int
    train_loss: float         # smoothed training loss at the end of the epoch
    valid_loss: float
    error_rate: float
    accuracy: float
    seconds: float


class FitEnd(_Base):
    stage: str
    cancelled: bool


class LRFindStep(_Base):
    step: int
    lr: float
    loss: float
    smooth_loss: float


class PrecomputeProgress(_Base):
    split: str                # "train" | "valid"
    done: int                 # images whose body features are computed so far
    total: int


# -- emitted by the job bodies (engine.jobs.run_jobs) ----------------------------------------------

class StageMessage(_Base):
    message: str              # "Reading the images", "Building the model", "Saving the run", …


class Note(_Base):
    message: str              # a sentence for the user, e.g. why precompute was not used


class PrecomputeRecord(TypedDict):
    requested: bool
    used: bool
    reason: Optional[str]     # why it was not used, as a sentence
    seconds: Optional[float]  # time spent computing the features


class LRFound(_Base):
    lrs: list[float]
    losses: list[float]
    suggestions: dict[str, Optional[float]]
    stopped_early: bool
    cancelled: bool
    precompute: PrecomputeRecord


class Saved(_Base):
    run_id: str
    status: str               # "done" | "cancelled"


Event = Union[FitStart, BatchEvent, EpochEvent, FitEnd, LRFindStep, PrecomputeProgress,
              StageMessage, Note, LRFound, Saved]
EVENT_KINDS: dict[str, type] = {
    "fit_start": FitStart, "batch": BatchEvent, "epoch": EpochEvent, "fit_end": FitEnd,
    "lr_find": LRFindStep, "precompute": PrecomputeProgress, "stage": StageMessage, "note": Note,
    "lr_found": LRFound, "saved": Saved}


# -- job results ---------------------------------------------------------------------------------

#: The LR-finder job's result: the lr_found event's fields, with kind "lr_find".
LRFindResultDict = LRFound


class TrainResult(TypedDict, total=False):
    kind: Literal["train"]
    epochs: list[EpochEvent]
    batches: list[BatchEvent]
    cancelled: bool
    run_id: Optional[str]     # None when nothing was saved (no finished epoch, or no owner)
    seconds: float
    n_batches: int            # training steps per epoch
    steps: int                # training steps taken
    precompute: PrecomputeRecord
    metrics: dict[str, float]
    training: dict            # precision, train_bn, param_groups (names), not_repeatable (or None)
    fit: Optional[dict]       # training images measured as validation ones (engine.fit_check)
    settings: dict            # the run's RunSettings.to_dict(), for the coach
    lr_find: Optional[dict]   # the LR finder's record the run was given (lrs, losses, suggestions)


class DataSet(TypedDict):
    """A prepared data set, as the Train page holds it."""

    folder: str               # a folder of class folders
    name: str                 # shown in the runs list
    flip: bool                # whether horizontal flips make sense (not for digits)
    writable: bool            # the session's own copy (uploads, URL lists): quarantine allowed


# One address a URL-list download could not use ("class" is a keyword, hence this form).
FailedURL = TypedDict("FailedURL", {"class": str, "url": str, "reason": str})


class DownloadResult(TypedDict, total=False):
    kind: Literal["download"]
    folder: str
    name: str
    flip: bool
    writable: bool
    report: list[str]         # one summary line per class (URL lists)
    failed: list[FailedURL]   # each address that failed, with its reason


__all__ = ["FitStart", "BatchEvent", "EpochEvent", "FitEnd", "LRFindStep", "PrecomputeProgress",
           "StageMessage", "Note", "PrecomputeRecord", "LRFound", "Saved", "Event", "EVENT_KINDS",
           "LRFindResultDict", "TrainResult", "DataSet", "FailedURL", "DownloadResult"]
