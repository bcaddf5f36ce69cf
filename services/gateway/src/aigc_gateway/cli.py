"""``aigc``: bring the local stack up and down, check health, and stream answers.

aigc up [--single-process] [--no-infra]   start Kafka/Redis/Prometheus and every service
aigc health                               health of every service
aigc chat "question"                      stream an answer from the chat template
aigc generate --template ID --var k=v     stream an answer from any template
aigc safety eval --dataset FILE.jsonl     precision/recall/latency of input checks on labelled lines
aigc safety rules [--tenant T] [--all]    the rules a running safety service applies; exit 3 if a reload was refused
aigc safety check [--tenant T] "text"     one input check on a running safety service: action, rules, spans
aigc keygen [--key-id ID]                 a new API key and the hash entry for the tenants file
aigc batch submit FILE.jsonl --template ID  submit a job and follow it with a progress line
aigc batch status JOB | results JOB         a job's counts; its results as JSON lines
aigc down                                 stop what `up` started
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aigc_gateway.stack import GATEWAY, NO_INFRA_ENV, SAFETY, SERVICES, ServiceSpec, repo_root, service_env


def _run_dir() -> Path:
    root = repo_root()
    base = Path(
        os.environ.get(
            "AIGC_RUN_DIR", str(root / ".cache" / "run" if root else Path.home() / ".cache/aigc/run")
        )
    )
    base.mkdir(parents=True, exist_ok=True)
    return base


def _say(message: str) -> None:
    print(f"[aigc] {message}", file=sys.stderr, flush=True)


def _stack_script(action: str) -> int:
    root = repo_root()
    if root is None:
        _say("no source checkout found; start Kafka, Redis and Prometheus yourself or pass --no-infra")
        return 1
    return subprocess.call(["bash", str(root / "scripts" / "local-stack.sh"), action])


async def _health(address: str, service: str = "", timeout: float = 2.0) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def _wait_serving(
    specs: list[ServiceSpec], procs: dict[str, subprocess.Popen[bytes]], timeout: float
) -> bool:
    pending = {s.name: s for s in specs}
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last_note = 0.0
    while pending and time.monotonic() < deadline:
        for name, spec in list(pending.items()):
            proc = procs.get(name)
            if proc is not None and proc.poll() is not None:
                _say(f"{name} exited with code {proc.returncode}; see {_run_dir() / (name + '.log')}")
                return False
            if await _health(spec.address, spec.health_name, timeout=1.0) == "SERVING":
                _say(f"{name:<9} serving on {spec.address} ({time.monotonic() - started:.1f}s)")
                del pending[name]
        if pending and time.monotonic() - last_note > 5:
            _say(f"waiting for {', '.join(pending)} (the inference service loads the model)...")
            last_note = time.monotonic()
        await asyncio.sleep(0.25)
    if pending:
        _say(f"not serving after {timeout:.0f}s: {', '.join(pending)}")
    return not pending


def cmd_up(args: argparse.Namespace) -> int:
    if args.no_infra:
        os.environ[NO_INFRA_ENV] = "1"  # children inherit it: they use the in-process defaults
    else:
        _say("starting Kafka, Redis and Prometheus (scripts/local-stack.sh up)")
        if _stack_script("up") != 0:
            return 1
    run = _run_dir()
    pids_file = run / "pids.json"
    if pids_file.exists() and any(_alive(p) for p in json.loads(pids_file.read_text()).values()):
        _say("services already running; `aigc down` first to restart them")
        return 0 if asyncio.run(_wait_serving(list(SERVICES), {}, 10)) else 1
    procs: dict[str, subprocess.Popen[bytes]] = {}
    groups = (
        [("stack", "aigc_gateway.stack", SERVICES)]
        if args.single_process
        else [(s.name, s.module, (s,)) for s in SERVICES]
    )
    for name, module, specs in groups:
        env = dict(os.environ)
        for spec in specs:
            env.update(service_env(spec, single_process=args.single_process))
        log = open(run / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", module],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _say(f"started {name} (pid {procs[name].pid}, log {run / (name + '.log')})")
    pids_file.write_text(json.dumps({n: p.pid for n, p in procs.items()}))
    watch = {s.name: procs["stack"] for s in SERVICES} if args.single_process else procs
    ok = asyncio.run(_wait_serving(list(SERVICES), watch, args.timeout))
    if ok:
        _say(f"stack is up: gateway on {GATEWAY.address}, metrics on http://127.0.0.1:9101/metrics")
    return 0 if ok else 1


def _alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def cmd_down(args: argparse.Namespace) -> int:
    pids_file = _run_dir() / "pids.json"
    pids: dict[str, int] = json.loads(pids_file.read_text()) if pids_file.exists() else {}
    for name, pid in pids.items():
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            _say(f"stopping {name} (pid {pid})")
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in pids.items():
        if _alive(pid):
            _say(f"{name} did not stop in time; killing it")
            os.kill(pid, signal.SIGKILL)
    pids_file.unlink(missing_ok=True)
    if not args.keep_infra:
        return _stack_script("down")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    async def check() -> bool:
        healthy = True
        for spec in SERVICES:
            status = await _health(spec.address, spec.health_name)
            healthy &= status == "SERVING"
            print(f"{spec.name:<10} {spec.address:<17} {status}")
        return healthy

    return 0 if asyncio.run(check()) else 1


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--var expects key=value, got {pair!r}")
        out[key] = value
    return out


def _stream(args: argparse.Namespace, **request: Any) -> int:
    """Streams one generation through the Python client: the answer to stdout, everything else
    (reasoning, safety notices, usage) to stderr, so `aigc generate ... > answer.txt` works."""
    from aigc_client import AigcError, Client, Delta, Finished, SafetyEvent, Started

    start = time.perf_counter()
    first = 0.0
    with Client(args.address, args.api_key, timeout=args.timeout) as client:
        try:
            for event in client.generate(skip_cache=args.no_cache, max_tokens=args.max_tokens, **request):
                if isinstance(event, Delta) and event.reasoning:
                    sys.stderr.write(event.text)
                elif isinstance(event, Delta):
                    first = first or time.perf_counter()
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                elif isinstance(event, SafetyEvent):
                    print(f"\n[safety] {event.action}: {event.message}", file=sys.stderr)
                elif isinstance(event, Started) and event.cache_hit:
                    print("[cache hit]", file=sys.stderr)
                elif isinstance(event, Finished):
                    u = event.usage
                    cost = f"{event.cost.amount:.6f} {event.cost.currency}" if event.cost.currency else "n/a"
                    ttft = (first - start) if first else 0.0
                    print(
                        f"\n\n[usage] prompt={u.prompt_tokens} completion={u.completion_tokens} "
                        f"cached={u.cached_tokens} cost={cost} finish={event.finish_reason.name} "
                        f"first_token={ttft:.2f}s total={time.perf_counter() - start:.2f}s",
                        file=sys.stderr,
                    )
        except AigcError as exc:
            print(f"\nerror: {exc.code.name}: {exc.details}", file=sys.stderr)
            return 1
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    return _stream(args, prompt=args.question)


def cmd_generate(args: argparse.Namespace) -> int:
    return _stream(args, template=args.template, label=args.label, variables=_parse_vars(args.var))


def _read_items(path: Path) -> dict[str, dict[str, str]]:
    """JSON lines of ``{"id": ..., "variables": {...}}`` (``item_id`` works for ``id`` too)."""
    items: dict[str, dict[str, str]] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                item_id = str(row.get("id") or row.get("item_id") or "")
                variables = {str(k): str(v) for k, v in dict(row.get("variables") or {}).items()}
            except (ValueError, TypeError, AttributeError) as exc:
                raise SystemExit(
                    f'{path} line {number}: expected {{"id": ..., "variables": {{...}}}} ({exc})'
                ) from None
            if not item_id or item_id in items:
                raise SystemExit(f"{path} line {number}: missing or repeated id {item_id!r}")
            items[item_id] = variables
    return items


def _progress(job: Any) -> str:
    done = job.total_items - job.pending_items
    width = 30
    filled = int(width * done / job.total_items) if job.total_items else width
    eta = f"ETA {job.eta_seconds:.0f}s" if job.eta_seconds else ""
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{job.total_items} done, "
        f"{job.failed_items + job.blocked_items + job.expired_items} failed, "
        f"cost {job.cost.amount:.6f} {job.cost.currency} {eta}"
    )


def cmd_batch(args: argparse.Namespace) -> int:
    from aigc_client import AigcError, BatchState, Client

    with Client(args.address, args.api_key, timeout=args.timeout) as client:
        try:
            if args.batch_command == "submit":
                items = _read_items(Path(args.file))
                job = client.submit_batch(
                    args.template,
                    items,
                    label=args.label,
                    max_tokens=args.max_tokens,
                    all_or_nothing=args.all_or_nothing,
                    priority=args.priority,
                )
                for rejected in job.rejected:
                    print(
                        f"[batch] rejected {rejected.item_id}: {rejected.field}: {rejected.message}",
                        file=sys.stderr,
                    )
                print(
                    f"[batch] job {job.job_id}: {job.item_count} items, worst case "
                    f"{job.estimated_cost.amount:.6f} {job.estimated_cost.currency} reserved",
                    file=sys.stderr,
                )
                print(job.job_id)
                while True:
                    state = client.get_batch(job.job_id)
                    print(f"\r{_progress(state)}", end="", file=sys.stderr, flush=True)
                    if state.state in (BatchState.COMPLETED, BatchState.CANCELLED, BatchState.EXPIRED):
                        print(file=sys.stderr)
                        return 0
                    time.sleep(1.0)
            if args.batch_command == "status":
                print(_progress(client.get_batch(args.job)))
                return 0
            for result in client.stream_batch_results(args.job, cursor=args.cursor):
                row: dict[str, object] = {
                    "id": result.item_id,
                    "status": result.status,
                    "text": result.text,
                    "error": result.error,
                    "cursor": result.cursor,
                }
                print(json.dumps(row, ensure_ascii=False), flush=True)
            return 0
        except AigcError as exc:
            print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
            return 1


def cmd_keygen(args: argparse.Namespace) -> int:
    from aigc_gateway.tenants import new_key

    key, entry = new_key(args.key_id or None)
    print("# give the key to the tenant once; only this entry goes into the tenants file:", file=sys.stderr)
    print(key, file=sys.stderr)
    print(f"- {{key_id: {entry.key_id}, sha256: {entry.sha256}}}")
    return 0


def cmd_safety_eval(args: argparse.Namespace) -> int:
    from aigc_safety.evaluate import run

    return run(Path(args.dataset), args.policy, args.format, Path(args.errors) if args.errors else None)


def _safety_call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """One unary call to the safety service at ``args.address``; None (and the status said on
    stderr) when it fails."""
    from aigc.safety.v1 import safety_pb2_grpc as pb_grpc

    async def call() -> Any:
        async with grpc.aio.insecure_channel(args.address) as channel:
            stub = pb_grpc.SafetyServiceStub(channel)
            return await getattr(stub, method)(request, timeout=args.timeout)

    try:
        return asyncio.run(call())
    except grpc.aio.AioRpcError as exc:
        _say(f"safety service at {args.address}: {exc.code().name}: {exc.details()}")
        return None


def _action_name(action: int) -> str:
    from aigc.safety.v1 import safety_pb2 as pb

    return str(pb.Action.Name(pb.Action.ValueType(action))).removeprefix("ACTION_").lower()


def cmd_safety_check(args: argparse.Namespace) -> int:
    """Checks one text as an input under a tenant's policy on a running safety service and prints
    the verdict: action, policy version, each hit with its rule, category and spans, the message a
    caller would see. For a policy author trying a pack change end to end; a verdict other than
    allow is audited like any request's (request id ``aigc-cli-...``)."""
    import uuid

    from aigc.safety.v1 import safety_pb2 as pb

    text = sys.stdin.read() if args.text == "-" else args.text
    request = pb.CheckInputRequest(
        tenant_id=args.tenant, policy=args.policy, text=text, request_id=f"aigc-cli-{uuid.uuid4().hex[:12]}"
    )
    reply = _safety_call(args, "CheckInput", request)
    if reply is None:
        return 1
    verdict = reply.verdict
    hits = [
        {
            "rule_id": h.rule_id,
            "category": h.category,
            "severity": h.severity,
            "spans": [[s.start, s.end] for s in h.spans],
            **({"score": round(h.score, 4)} if h.score else {}),
        }
        for h in verdict.hits
    ]
    if args.format == "json":
        report = {
            "action": _action_name(verdict.action),
            "policy_version": verdict.policy_version,
            "hits": hits,
            "message": verdict.message,
            "redacted_text": verdict.redacted_text,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"{_action_name(verdict.action)} under {verdict.policy_version}")
    for h in hits:
        spans = ", ".join(f"{a}-{b}" for a, b in h["spans"])
        score = f" score {h['score']:.3f}" if "score" in h else ""
        print(f"  {h['rule_id']:<48} {h['category']:<26} severity {h['severity']}{score} at {spans}")
    if verdict.message:
        print(f"message: {verdict.message}")
    if verdict.redacted_text:
        print(f"redacted: {verdict.redacted_text}")
    return 0


def cmd_safety_rules(args: argparse.Namespace) -> int:
    """The rules a running safety service applies for a tenant: the policy version and the count
    of rules per category and action (every rule with ``--all``). Exits 3 when the packs or
    policies on the service's disk were refused at its last reload, so a rollout script notices
    that an edited pack is not what serves."""
    from aigc.safety.v1 import safety_pb2 as pb

    reply = _safety_call(args, "ListRules", pb.ListRulesRequest(tenant_id=args.tenant, policy=args.policy))
    if reply is None:
        return 1
    rules = [
        {
            "rule_id": r.rule_id,
            "category": r.category,
            "action": _action_name(r.action),
            "language": r.language,
            "description": r.description,
        }
        for r in reply.rules
    ]
    if args.format == "json":
        report = {"policy_version": reply.pack_version, "reload_error": reply.reload_error, "rules": rules}
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(f"policy {reply.pack_version}: {len(rules)} rules")
        if args.all:
            for r in rules:
                print(f"  {r['rule_id']:<48} {r['category']:<26} {r['action']:<7} {r['language']}")
        else:
            counts: dict[tuple[str, str], int] = {}
            for r in rules:
                counts[r["category"], r["action"]] = counts.get((r["category"], r["action"]), 0) + 1
            print(f"  {'category':<26} {'action':<7} rules")
            for (category, action), n in sorted(counts.items()):
                print(f"  {category:<26} {action:<7} {n:>5}")
    if reply.reload_error:
        _say(
            "the packs or policies on the service's disk were refused at its last reload; the rules "
            f"above are the last good ones still serving. Reason: {reply.reload_error}"
        )
        return 3
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aigc", description="AIGC Engine command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the local stack and every service")
    up.add_argument("--single-process", action="store_true", help="host all services in one process")
    up.add_argument("--no-infra", action="store_true", help="do not start Kafka, Redis and Prometheus")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for every service")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop what `aigc up` started")
    down.add_argument("--keep-infra", action="store_true", help="leave Kafka, Redis and Prometheus running")
    down.set_defaults(func=cmd_down)

    sub.add_parser("health", help="health of every service").set_defaults(func=cmd_health)

    for name, helptext in (("chat", "ask a question"), ("generate", "run a template")):
        p = sub.add_parser(name, help=helptext)
        if name == "chat":
            p.add_argument("question")
        else:
            p.add_argument("--template", required=True, help="template id")
            p.add_argument("--label", default="", help="template label (default production)")
            p.add_argument(
                "--var", action="append", default=[], help="template variable key=value (repeatable)"
            )
        p.add_argument("--address", default=GATEWAY.address, help="gateway host:port")
        p.add_argument("--max-tokens", type=int, default=0, help="answer length cap (0 = template default)")
        p.add_argument("--no-cache", action="store_true", help="bypass the answer cache")
        p.add_argument(
            "--api-key",
            default=os.environ.get("AIGC_API_KEY", ""),
            help="API key (default: $AIGC_API_KEY; none for a stack without a tenants file)",
        )
        p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the whole answer")
        p.set_defaults(func=cmd_chat if name == "chat" else cmd_generate)

    batch = sub.add_parser("batch", help="batch jobs").add_subparsers(dest="batch_command", required=True)
    submit = batch.add_parser("submit", help="submit FILE.jsonl and follow the job")
    submit.add_argument("file", help='JSON lines: {"id": ..., "variables": {...}}')
    submit.add_argument("--template", required=True, help="template id")
    submit.add_argument("--label", default="", help="template label (default production)")
    submit.add_argument(
        "--max-tokens", type=int, default=0, help="answer length cap per item (0 = template's)"
    )
    submit.add_argument("--all-or-nothing", action="store_true", help="refuse the job if any item is invalid")
    submit.add_argument(
        "--priority",
        choices=("low", "normal", "high"),
        default="normal",
        help="the job's share of the workers' queue against other jobs",
    )
    status = batch.add_parser("status", help="a job's counts, cost and ETA")
    status.add_argument("job")
    results = batch.add_parser("results", help="a job's results as JSON lines, each item once")
    results.add_argument("job")
    results.add_argument("--cursor", type=int, default=0, help="resume after this many results")
    for p in (submit, status, results):
        p.add_argument("--address", default=GATEWAY.address, help="gateway host:port")
        p.add_argument(
            "--api-key", default=os.environ.get("AIGC_API_KEY", ""), help="API key (default: $AIGC_API_KEY)"
        )
        p.add_argument("--timeout", type=float, default=60, help="seconds per call")
        p.set_defaults(func=cmd_batch)

    keygen = sub.add_parser("keygen", help="a new API key and its tenants-file entry")
    keygen.add_argument(
        "--key-id", default="", help="key id (4-32 lower-case letters or digits); random if unset"
    )
    keygen.set_defaults(func=cmd_keygen)

    safety = sub.add_parser("safety", help="safety tools").add_subparsers(
        dest="safety_command", required=True
    )
    evaluate = safety.add_parser(
        "eval", help="precision, recall, false positives and latency of input checks on labelled JSON lines"
    )
    evaluate.add_argument("--dataset", required=True, help="JSON lines with text and label (safe|unsafe)")
    evaluate.add_argument("--policy", default="", help="policy to evaluate (default: the default policy)")
    evaluate.add_argument("--format", choices=("text", "json"), default="text", help="json: one JSON object")
    evaluate.add_argument(
        "--errors",
        default="",
        metavar="FILE",
        help="also write the lines the policy got wrong (missed, flagged safe) with their hits and "
        "classifier score to FILE as JSON lines (it holds the texts; created mode 600)",
    )
    evaluate.set_defaults(func=cmd_safety_eval)
    listing = safety.add_parser(
        "rules", help="the rules a running safety service applies, and whether its last reload was refused"
    )
    listing.add_argument("--all", action="store_true", help="every rule, not counts per category and action")
    listing.set_defaults(func=cmd_safety_rules)
    checking = safety.add_parser(
        "check", help="check one text as an input on a running safety service and print the verdict"
    )
    checking.add_argument("text", help="the text to check; - reads it from stdin")
    checking.set_defaults(func=cmd_safety_check)
    for p in (listing, checking):
        p.add_argument("--address", default=SAFETY.address, help="safety service host:port")
        p.add_argument(
            "--tenant", default="", help="tenant whose policy applies (default: the default policy)"
        )
        p.add_argument("--policy", default="", help="policy by name instead of the tenant's")
        p.add_argument("--format", choices=("text", "json"), default="text", help="json: one JSON object")
        p.add_argument("--timeout", type=float, default=10, help="seconds to wait for the service")

    args = parser.parse_args(argv)
    raise SystemExit(args.func(args))
