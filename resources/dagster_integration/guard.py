"""The one-line guard: `@guarded_asset` / `@guarded_multi_asset` / `@guarded_op` in place of
`@dg.asset` / `@dg.multi_asset` / `@dg.op`; the body runs only while the lock is held.

Examples:
    .. code-block:: python

        @guarded_asset(queue="warehouse", partitions_def=daily, on_held="wait", wait_seconds=120)
        def daily_orders(context: dg.AssetExecutionContext, config: OrdersConfig) -> int:
            return load(context.partition_key)

Everything `@dg.asset` (or `@dg.op`) accepts passes through; the guard's own arguments are the
lock's queue, its key (a lock shared on purpose), the overlap policy and the lease. The lock
resource (`lock` unless `resource_key` says otherwise) is added to the function's parameters
when it does not name it itself, so Dagster injects it as any resource; a parameter named
`held` receives the `Held` (its fence, for writes fenced by the lock). Outputs are made
optional, so a run that finds the work held or done succeeds without materializing anything;
they are emitted once the lock is released, so a lease lost mid-way fails the run first.
"""

# No `from __future__ import annotations`: the signature built here is read by Dagster.

import copy
import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

# Dagster's own conversion of a compute function's return value into its output events (the
# same code runs for a plain @dg.asset); the version is pinned with dagster in pyproject.toml.
from dagster._core.execution.plan.compute_generator import (
    validate_and_coerce_op_result_to_iterator,
)

from ..errors import LockConfigError
from ..validation import MAX_LEASE_SECONDS, check_lease, check_name, check_seconds
from .resource import AfterWait, DistributedLockResource, OnHeld

DEFAULT_QUEUE = "dagster"
DEFAULT_RESOURCE_KEY = "lock"
_CONTEXT_NAMES = ("context", "_context", "_")
# A parameter of this name gets the Held; Dagster never sees it (it would be an input).
HELD_PARAMETER = "held"


class GuardSettings(typing.NamedTuple):
    """The guard's own arguments, checked when the decorator is applied."""

    queue: str
    lock_key: str | None
    job_name: str | None
    on_held: OnHeld | None
    wait_seconds: float | None
    after_wait: AfterWait | None
    lease_seconds: float | None
    resource_key: str


def _settings(
    queue: str,
    lock_key: str | None,
    job_name: str | None,
    on_held: str | None,
    wait_seconds: float | None,
    after_wait: str | None,
    lease_seconds: float | None,
    resource_key: str,
) -> GuardSettings:
    check_name("queue", queue)
    for kind, name in (("lock_key", lock_key), ("job_name", job_name)):
        if name is not None:
            check_name(kind, name)
    if on_held not in (None, "skip", "fail", "wait"):
        raise LockConfigError(
            f"Incorrect config: on_held must be 'skip', 'fail' or 'wait', got {on_held!r}."
        )
    if after_wait not in (None, "skip", "fail"):
        raise LockConfigError(
            f"Incorrect config: after_wait must be 'skip' or 'fail', got {after_wait!r}."
        )
    if wait_seconds is not None:
        check_seconds("wait_seconds", wait_seconds, maximum=MAX_LEASE_SECONDS, allow_zero=True)
    if lease_seconds is not None:
        check_lease(lease_seconds)
    if not resource_key.isidentifier():
        raise LockConfigError(
            f"Incorrect config: resource_key must be a Python identifier (the parameter Dagster "
            f"injects the lock resource as), got {resource_key!r}."
        )
    return GuardSettings(
        queue,
        lock_key,
        job_name,
        typing.cast("OnHeld | None", on_held),
        wait_seconds,
        typing.cast("AfterWait | None", after_wait),
        lease_seconds,
        resource_key,
    )


def _guarded_signature(
    fn: Callable[..., Any], context_type: type, resource_key: str
) -> tuple[inspect.Signature, bool]:
    """The signature Dagster reads: the function's own, annotations resolved in its module,
    with a context first and the lock resource last when it does not name them itself."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise LockConfigError(
            f"Incorrect config: {fn.__name__} is async; the guard wraps plain functions and "
            "generators only. Make it a plain function (call asyncio.run inside if needed)."
        )
    hints = typing.get_type_hints(fn, include_extras=True)
    params = [
        parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
        for parameter in inspect.signature(fn).parameters.values()
        if parameter.name != HELD_PARAMETER
    ]
    takes_context = bool(params) and params[0].name in _CONTEXT_NAMES
    if not takes_context:
        params.insert(
            0,
            inspect.Parameter(
                "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=context_type
            ),
        )
    if all(parameter.name != resource_key for parameter in params):
        params.append(
            inspect.Parameter(
                resource_key,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=DistributedLockResource,
            )
        )
    # A generator's return annotation is not its output's type (Dagster ignores it too).
    returns = (
        inspect.Signature.empty
        if inspect.isgeneratorfunction(fn)
        else hints.get("return", inspect.Signature.empty)
    )
    return inspect.Signature(params, return_annotation=returns), takes_context


def _guard(
    fn: Callable[..., Any],
    settings: GuardSettings,
    context_type: type,
    default_job_name: Callable[[Any], str | None],
) -> Callable[..., Any]:
    """The compute function Dagster calls: hold the lock, run `fn` if held, then emit."""
    signature, takes_context = _guarded_signature(fn, context_type, settings.resource_key)
    names = set(inspect.signature(fn).parameters)
    wants_held = HELD_PARAMETER in names

    @functools.wraps(fn)
    def guarded(context: Any, **kwargs: Any) -> Iterator[Any]:
        lock: DistributedLockResource = kwargs[settings.resource_key]
        own = {name: value for name, value in kwargs.items() if name in names}
        # A plain function, returning a generator: Dagster then reads the return annotation
        # (the output's type), and the body runs only once Dagster iterates, inside the step.
        return _run_guarded(
            context, lock, fn, own, takes_context, wants_held, settings, default_job_name
        )

    guarded.__signature__ = signature  # type: ignore[attr-defined]
    return guarded


def _run_guarded(
    context: Any,
    lock: DistributedLockResource,
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any],
    takes_context: bool,
    wants_held: bool,
    settings: GuardSettings,
    default_job_name: Callable[[Any], str | None],
) -> Iterator[Any]:
    with lock.hold_for(
        context,
        settings.queue,
        job_name=settings.job_name or default_job_name(context),
        lock_key=settings.lock_key,
        on_held=settings.on_held,
        wait_seconds=settings.wait_seconds,
        after_wait=settings.after_wait,
        lease_seconds=settings.lease_seconds,
    ) as held:
        if not held.acquired:
            return
        if wants_held:
            kwargs = {**kwargs, HELD_PARAMETER: held}
        result = fn(context, **kwargs) if takes_context else fn(**kwargs)
        # Drawn to the end while the lock is held: a generator's work is the body's work.
        events = list(result) if inspect.isgenerator(result) else None
    # Emitted after the release, so a lease lost while the body ran fails the run first.
    if events is not None:
        yield from events
    else:
        yield from validate_and_coerce_op_result_to_iterator(
            result, context, context.op_def.output_defs
        )


def _not_required(out: Any) -> Any:
    """A copy of a dg.Out or dg.AssetOut that a skipped run may leave out."""
    if isinstance(out, dg.Out):
        return out._replace(is_required=False)
    optional = copy.copy(out)
    optional.is_required = False
    return optional


def _asset_job_name(context: Any) -> str | None:
    return None  # hold_for's default: the asset key


def _multi_asset_job_name(context: Any) -> str | None:
    # One lock for every way of running it, not one per Dagster job that includes it.
    return context.op_def.name


def _op_job_name(context: Any) -> str | None:
    return None  # hold_for's default: the Dagster job's name


def _decorator(
    fn: Callable[..., Any] | None,
    build: Callable[[Callable[..., Any], GuardSettings], Any],
    settings: GuardSettings,
) -> Any:
    if fn is not None:  # used bare: @guarded_asset
        return build(fn, settings)
    return lambda function: build(function, settings)


def guarded_asset(
    fn: Callable[..., Any] | None = None,
    *,
    queue: str = DEFAULT_QUEUE,
    lock_key: str | None = None,
    job_name: str | None = None,
    on_held: OnHeld | None = None,
    wait_seconds: float | None = None,
    after_wait: AfterWait | None = None,
    lease_seconds: float | None = None,
    resource_key: str = DEFAULT_RESOURCE_KEY,
    **asset_kwargs: Any,
) -> Any:
    """`@dg.asset`, materialized only by the run that holds the lock (once per partition,
    tick or run key). See the module docstring for the guard's own arguments."""
    settings = _settings(
        queue, lock_key, job_name, on_held, wait_seconds, after_wait, lease_seconds, resource_key
    )

    def build(function: Callable[..., Any], settings: GuardSettings) -> dg.AssetsDefinition:
        guarded = _guard(function, settings, dg.AssetExecutionContext, _asset_job_name)
        return dg.asset(output_required=False, **asset_kwargs)(guarded)

    return _decorator(fn, build, settings)


def guarded_multi_asset(
    fn: Callable[..., Any] | None = None,
    *,
    outs: Mapping[str, dg.AssetOut],
    queue: str = DEFAULT_QUEUE,
    lock_key: str | None = None,
    job_name: str | None = None,
    on_held: OnHeld | None = None,
    wait_seconds: float | None = None,
    after_wait: AfterWait | None = None,
    lease_seconds: float | None = None,
    resource_key: str = DEFAULT_RESOURCE_KEY,
    **multi_asset_kwargs: Any,
) -> Any:
    """`@dg.multi_asset(outs=...)`: all its assets materialized by the run that holds the lock
    (one lock for the whole, named after the function unless job_name says otherwise)."""
    settings = _settings(
        queue, lock_key, job_name, on_held, wait_seconds, after_wait, lease_seconds, resource_key
    )
    optional_outs = {name: _not_required(out) for name, out in outs.items()}

    def build(function: Callable[..., Any], settings: GuardSettings) -> dg.AssetsDefinition:
        guarded = _guard(function, settings, dg.AssetExecutionContext, _multi_asset_job_name)
        return dg.multi_asset(outs=optional_outs, **multi_asset_kwargs)(guarded)

    return _decorator(fn, build, settings)


def guarded_op(
    fn: Callable[..., Any] | None = None,
    *,
    queue: str = DEFAULT_QUEUE,
    lock_key: str | None = None,
    job_name: str | None = None,
    on_held: OnHeld | None = None,
    wait_seconds: float | None = None,
    after_wait: AfterWait | None = None,
    lease_seconds: float | None = None,
    resource_key: str = DEFAULT_RESOURCE_KEY,
    out: dg.Out | Mapping[str, dg.Out] | None = None,
    **op_kwargs: Any,
) -> Any:
    """`@dg.op` whose body runs only while the lock (named after the Dagster job unless
    job_name says otherwise) is held; its outputs are optional, so a skipped run succeeds."""
    settings = _settings(
        queue, lock_key, job_name, on_held, wait_seconds, after_wait, lease_seconds, resource_key
    )
    if out is None:
        optional_out: Any = dg.Out(is_required=False)
    elif isinstance(out, dg.Out):
        optional_out = _not_required(out)
    else:
        optional_out = {name: _not_required(each) for name, each in out.items()}

    def build(function: Callable[..., Any], settings: GuardSettings) -> dg.OpDefinition:
        guarded = _guard(function, settings, dg.OpExecutionContext, _op_job_name)
        return dg.op(out=optional_out, **op_kwargs)(guarded)

    return _decorator(fn, build, settings)


__all__ = ["guarded_asset", "guarded_multi_asset", "guarded_op"]
